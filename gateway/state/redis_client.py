"""What every module that talks to Redis shares: the client type, the errors that mean "Redis cannot
serve right now", and the channel on which writes are announced."""

from __future__ import annotations

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

# Every accepted write publishes the asset id (never the record) here; see gateway.state.invalidation.
INVALIDATION_CHANNEL: Final = "asset-gateway:invalidate"
