"""Asset records in Redis (single node, Sentinel or Cluster), written with a compare-and-set
script so that late, out-of-order writes from several publishers never overwrite a newer state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, TypeAlias

from redis.exceptions import (  # type: ignore[attr-defined, unused-ignore]  # stubs lack OOM
    ClusterError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError,
    TryAgainError,
)

from gateway.models import AssetRecord
from gateway.records import record_from_dict, record_to_dict
from gateway.state.base import StoreUnavailable, WriteResult

# redis.asyncio.Redis (single node or Sentinel master) or redis.asyncio.cluster.RedisCluster.
# Any, not that union: redis-py ships its own types, but where the obsolete types-redis stubs are
# installed they win and disagree with them (no `aclose`, a RedisCluster without `hget`), and no
# annotation passes `mypy --strict` under both. The tests exercise every call against real servers.
RedisClient: TypeAlias = Any

# Errors that mean "Redis cannot serve right now" (down, failing over, cluster resharding, out of
# memory). Anything else is a bug or bad data and should surface as such, not as a 503.
UNAVAILABLE: Final = (
    ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, MasterNotFoundError
    TimeoutError,
    ReadOnlyError,  # a write reached a replica mid-failover
    ClusterError,  # includes ClusterDownError, MasterDownError
    RedisClusterException,  # e.g. SlotNotCoveredError
    TryAgainError,
    OutOfMemoryError,
    OSError,
)

# Versions are compared as canonical decimal strings, not Lua numbers: Lua's doubles lose precision
# above 2^53 and records allow versions up to 2^63 - 1. Returns {applied, current_version}.
PUT_SCRIPT: Final = """
local current = redis.call('HGET', KEYS[1], 'version')
local incoming = ARGV[1]
if current and (#incoming < #current or (#incoming == #current and incoming <= current)) then
  return {0, current}
end
redis.call('HSET', KEYS[1], 'version', incoming, 'record', ARGV[2])
return {1, incoming}
"""


def asset_key(asset_id: str) -> str:
    """The braces are a Cluster hash tag: every key we ever add for one asset lands in one slot."""
    return f"asset:{{{asset_id}}}"


def unavailable(operation: str, exc: BaseException) -> StoreUnavailable:
    """Short: redis-py embeds the whole client repr in some messages, and this goes to logs."""
    return StoreUnavailable(f"redis {operation} failed: {type(exc).__name__}: {str(exc)[:200]}")


class RedisAssetStore:
    """One hash per asset with fields `version` and `record` (the DESIGN 2.4 JSON)."""

    def __init__(self, client: RedisClient, *, also_close: Sequence[RedisClient] = ()) -> None:
        """`also_close`: helper clients the store owns, e.g. the Sentinel connections."""
        self.client = client  # public: invalidation (pub/sub) reuses this connection setup
        self._also_close = tuple(also_close)
        self._put = client.register_script(PUT_SCRIPT)  # sent once, then called by SHA
        self.reads = 0

    async def get(self, asset_id: str) -> AssetRecord | None:
        self.reads += 1
        try:
            raw = await self.client.hget(asset_key(asset_id), "record")
        except UNAVAILABLE as exc:
            raise unavailable("get", exc) from exc
        if raw is None:
            return None
        return record_from_dict(json.loads(raw))

    async def put(self, record: AssetRecord) -> WriteResult:
        payload = json.dumps(record_to_dict(record), separators=(",", ":"))
        try:
            applied, current = await self._put(
                keys=[asset_key(record.id)], args=[str(record.version), payload]
            )
        except UNAVAILABLE as exc:
            raise unavailable("put", exc) from exc
        return WriteResult(applied=bool(int(applied)), current_version=int(current))

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except UNAVAILABLE as exc:
            raise unavailable("ping", exc) from exc

    async def close(self) -> None:
        await self.client.aclose()
        for client in self._also_close:
            await client.aclose()
