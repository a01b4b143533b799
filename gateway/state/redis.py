"""Asset records in Redis (single node, Sentinel or Cluster), written with a compare-and-set
script so that late, out-of-order writes from several publishers never overwrite a newer state."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from gateway.cdn.plan import Purge, PurgeKind, plan_purge, purge_paths
from gateway.cdn.queue import PURGE_STREAM, entry_fields
from gateway.cdn.tags import asset_key as tag_key
from gateway.models import AssetRecord
from gateway.records import STORED_MAX_VERSION, RecordInvalid, record_from_dict, record_to_dict
from gateway.state.base import RecordUnreadable, StoreUnavailable, Subscriber, WriteResult
from gateway.state.redis_client import INVALIDATION_CHANNEL, UNAVAILABLE, RedisClient
from gateway.state.redis_pubsub import listen

__all__ = ["INVALIDATION_CHANNEL", "UNAVAILABLE", "RedisAssetStore", "RedisClient", "asset_key"]

log = logging.getLogger(__name__)

# One script for one record or a batch. Versions are compared as canonical decimal strings, not
# Lua numbers: Lua's doubles lose precision above 2^53 and stored records may carry versions up to
# 2^63 - 1 (written before versions were capped, see gateway.records.MAX_VERSION).
# ARGV: channel, mode, then for each key: version, record JSON, asset id. Mode: '' a plain PUT;
# digits: a PATCH's base version (one key only: the stored version must still be this one, '0'
# for none); '*' a forced write by ops, applied whatever the stored version is.
# A stored value that cannot be a record (not a hash, a version that is not a canonical decimal,
# a record field that is missing or not a JSON object) counts as no record, so a PUT repairs it;
# the gateways never serve it meanwhile (gateway.state.base.RecordUnreadable).
# Returns for each key: outcome (1 written, 0 refused, 2 this very record is already stored: a
# repeated write, as when redis-py resends a command whose reply was lost), the version stored
# after the call, and 1 if the key was empty. The id is published from inside the script, so it
# is announced exactly when a write is applied, with no window between the two and no extra round
# trip. The same goes for a CDN purge (DESIGN 2.9): ARGV[3] is '1' when purges are on (the purge
# stream is then the last KEY) and each key's arguments go on with the purge kind ('', soft,
# hard), the version that kind was decided against ('0': no record), and the purge's keys and
# paths (gateway.cdn.queue); the purge is enqueued exactly when the write is applied, and made hard
# when the record changed after the caller read it (a planned kind may then be wrong; hard is
# always safe). PUBLISH has no key: a one-key call is single-slot on Cluster, where a PUBLISH
# reaches every node; batches are sent only to a single node; on Cluster purges are off here and
# enqueued by the caller (the stream's slot is not the record's).
PUT_SCRIPT: Final = """
local channel, mode, purging = ARGV[1], ARGV[2], ARGV[3] == '1'
local function readable_version(key, kind)
  if kind ~= 'hash' then
    return nil
  end
  local version = redis.call('HGET', key, 'version')
  if not version or #version > 19 or not string.match(version, '^[1-9][0-9]*$') then
    return nil
  end
  local stored = redis.call('HGET', key, 'record')
  if not stored then
    return nil
  end
  local ok, value = pcall(cjson.decode, stored)
  if not ok or type(value) ~= 'table' then
    return nil
  end
  return version
end
local records = #KEYS
if purging then
  records = records - 1
end
local replies = {}
for i = 1, records do
  local key, at = KEYS[i], 7 * i - 3
  local incoming, payload, id = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local kind = redis.call('TYPE', key)['ok']
  local current = readable_version(key, kind)
  local outcome, created = 1, 0
  if mode ~= '*' and current
      and (#incoming < #current or (#incoming == #current and incoming <= current)) then
    outcome = 0
    if incoming == current and redis.call('HGET', key, 'record') == payload then
      outcome = 2
    end
  elseif mode ~= '' and mode ~= '*' and (current or '0') ~= mode then
    outcome = 0
  else
    if kind ~= 'none' and not current then
      redis.call('DEL', key)  -- an unreadable value: nothing of it may survive the repair
    end
    redis.call('HSET', key, 'version', incoming, 'record', payload)
    redis.call('PUBLISH', channel, id)
    if purging then
      local purge = ARGV[at + 3]
      if (current or '0') ~= ARGV[at + 4] then
        purge = 'hard'
      end
      if purge ~= '' then
        local keys, paths = ARGV[at + 5], ARGV[at + 6]
        redis.call('XADD', KEYS[#KEYS], '*', 'id', id, 'kind', purge, 'keys', keys, 'paths', paths)
      end
    end
    if kind == 'none' then
      created = 1
    end
    current = incoming
  end
  replies[#replies + 1] = outcome
  replies[#replies + 1] = current or '0'
  replies[#replies + 1] = created
end
return replies
"""

KEY_PATTERN: Final = "asset:*"
CLUSTER_WRITE_CONCURRENCY: Final = 64  # Cluster pipelines refuse scripts: concurrent calls instead
# Seconds one read or ping may take in all, retries and reconnects included: a hung
# Redis (stopped, partitioned) must turn into a prompt 503, not a request held for seconds.
DEADLINE: Final = 0.9
FORCE: Final = "*"  # the script's mode for a forced write


def asset_key(asset_id: str) -> str:
    """The braces are a Cluster hash tag: every key we ever add for one asset lands in one slot."""
    return f"asset:{{{asset_id}}}"


def unavailable(operation: str, exc: BaseException) -> StoreUnavailable:
    """Short: redis-py embeds the whole client repr in some messages, and this goes to logs."""
    return StoreUnavailable(f"redis {operation} failed: {type(exc).__name__}: {str(exc)[:200]}")


class RedisAssetStore:
    """One hash per asset with fields `version` and `record` (the DESIGN 2.4 JSON)."""

    def __init__(
        self,
        client: RedisClient,
        *,
        also_close: Sequence[RedisClient] = (),
        deadline: float = DEADLINE,
        purge: bool = False,
    ) -> None:
        """`also_close`: helper clients the store owns, e.g. the Sentinel connections. `purge`:
        enqueue a CDN purge for every applied write that changes a live answer (gateway.cdn)."""
        self.client = client
        self._also_close = tuple(also_close)
        self.deadline = deadline
        self.purge = purge
        self._cluster = isinstance(client, RedisCluster)
        self._put = client.register_script(PUT_SCRIPT)  # sent once, then called by SHA
        # Loaded up front rather than on the first NOSCRIPT: redis-py's Cluster client, retrying
        # many concurrent NOSCRIPT calls, loses connections and resends commands.
        self._script_loaded = False
        self.reads = 0
        # Reads asked for in one event-loop turn, sent together (see `_read`).
        self._batch: dict[str, list[asyncio.Future[Any]]] | None = None
        self._reading: set[asyncio.Task[None]] = set()

    async def get(self, asset_id: str) -> AssetRecord | None:
        self.reads += 1
        raw = await self._read(asset_id)
        if raw is None:
            return None
        try:
            return record_from_dict(json.loads(raw), max_version=STORED_MAX_VERSION)
        except (ValueError, RecursionError) as exc:  # RecordInvalid is a ValueError
            raise _unreadable(asset_id, exc) from None

    def _read(self, asset_id: str) -> asyncio.Future[Any]:
        """The stored JSON of one record (None when there is none); raises StoreUnavailable.

        Every read asked for in the same event-loop turn goes to Redis in one pipeline: redis-py
        spends about three times the CPU on a command sent alone as on one inside a pipeline,
        and under load many requests miss the cache in the same turn. Each caller waits on a
        future of its own, so one giving up (a client disconnecting) cancels nobody else's read.
        """
        loop = asyncio.get_running_loop()
        if self._batch is None:
            self._batch = {}
            loop.call_soon(self._send_batch)
        future: asyncio.Future[Any] = loop.create_future()
        self._batch.setdefault(asset_id, []).append(future)
        return future

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            task = asyncio.get_running_loop().create_task(self._read_batch(batch))
            self._reading.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._reading.discard)

    async def _read_batch(self, batch: dict[str, list[asyncio.Future[Any]]]) -> None:
        """One round trip for the batch. An error that belongs to one key (WRONGTYPE: a value
        that is not our hash) fails that id alone; only Redis failing fails them all."""
        ids = list(batch)
        values: list[Any]
        try:
            async with asyncio.timeout(self.deadline):
                if len(ids) == 1:
                    try:
                        values = [await self.client.hget(asset_key(ids[0]), "record")]
                    except ResponseError as exc:
                        values = [exc]
                else:
                    pipe = self.client.pipeline(transaction=False)
                    for asset_id in ids:
                        pipe.hget(asset_key(asset_id), "record")
                    values = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(_read_error(exc, None))
            return
        for asset_id, value in zip(ids, values, strict=True):
            if isinstance(value, Exception):
                error = _read_error(value, asset_id)
                for future in batch[asset_id]:
                    if not future.done():
                        future.set_exception(error)
                continue
            for future in batch[asset_id]:
                if not future.done():
                    future.set_result(value)

    async def put(
        self, record: AssetRecord, *, base_version: int | None = None, force: bool = False
    ) -> WriteResult:
        mode = FORCE if force else "" if base_version is None else str(base_version)
        try:
            # No overall deadline here, unlike reads: the first write loads the script on every
            # primary, and a write that times out leaves the caller unsure whether it applied.
            # The socket timeout still bounds each step, and a timeout is not retried.
            await self._load_script()
            plans = await self._plan_purges([record])
            result = _write_results(await self._call([record], plans, mode))[0]
            if self._cluster and result.applied:
                await self._enqueue_after(plans)
        except UNAVAILABLE as exc:
            raise unavailable("put", exc) from exc
        return result

    async def _call(self, records: Sequence[AssetRecord], plans: Sequence[PurgePlan], mode: str) -> Any:
        """One script call; purges inside it except on Cluster (see PUT_SCRIPT)."""
        inline = self.purge and not self._cluster
        keys = [asset_key(r.id) for r in records] + ([PURGE_STREAM] if inline else [])
        args = [INVALIDATION_CHANNEL, mode, "1" if inline else ""]
        for record, plan in zip(records, plans, strict=True):
            args.extend(_args(record))
            args.extend(plan.script_args())
        return await self._put(keys=keys, args=args)

    async def _plan_purges(self, records: Sequence[AssetRecord]) -> list[PurgePlan]:
        """With purges on, read each record's stored state and decide what its write purges."""
        if not self.purge:
            return [NO_PLAN] * len(records)
        pipe = self.client.pipeline(transaction=False)
        for record in records:
            pipe.hget(asset_key(record.id), "record")
        stored = await pipe.execute(raise_on_error=False)
        return [PurgePlan.between(raw, record) for raw, record in zip(stored, records, strict=True)]

    async def _enqueue_after(self, plans: Sequence[PurgePlan]) -> None:
        """Cluster: the stream lives in another slot than the record, so the purge is enqueued right
        after the write. A crash in between loses it; the CDN's copy then lives out its max-age
        (public answers: at most half the presigned URL's life, replacement 301s 30 minutes), and
        `asset-gateway cdn purge ID` drops it at once."""
        for plan in plans:
            if plan.purge is not None:
                await self.client.xadd(PURGE_STREAM, entry_fields(plan.purge))

    async def put_many(self, records: Sequence[AssetRecord]) -> list[WriteResult | StoreUnavailable]:
        """One script call for the whole batch on a single node (so a batch costs Python one
        command, not hundreds); bounded concurrent single calls on Cluster, where a batch's keys
        live on different nodes."""
        if not records:
            return []
        if isinstance(self.client, RedisCluster):
            results: list[WriteResult | StoreUnavailable] = []
            for start in range(0, len(records), CLUSTER_WRITE_CONCURRENCY):
                chunk = records[start : start + CLUSTER_WRITE_CONCURRENCY]
                results.extend(await asyncio.gather(*(self._put_or_error(r) for r in chunk)))
            return results
        try:
            await self._load_script()
            reply = await self._call(records, await self._plan_purges(records), "")
        except UNAVAILABLE as exc:
            return [unavailable("put", exc)] * len(records)
        return list(_write_results(reply))

    async def _load_script(self) -> None:
        if not self._script_loaded:
            await self.client.script_load(PUT_SCRIPT)  # on Cluster: every primary
            self._script_loaded = True

    async def _put_or_error(self, record: AssetRecord) -> WriteResult | StoreUnavailable:
        try:
            return await self.put(record)
        except StoreUnavailable as exc:
            return exc

    async def scan(self, batch_size: int = 1000) -> AsyncIterator[list[AssetRecord]]:
        """SCAN over `asset:*` (on Cluster, every primary), then the records in pipelined batches.
        Like any SCAN: a record present for the whole scan is returned; concurrent writes may or
        may not be seen."""
        keys: list[bytes] = []
        try:
            async for key in self.client.scan_iter(match=KEY_PATTERN, count=batch_size):
                keys.append(key)
                if len(keys) >= batch_size:
                    yield await self._records(keys)
                    keys = []
            if keys:
                yield await self._records(keys)
        except UNAVAILABLE as exc:
            raise unavailable("scan", exc) from exc

    async def _records(self, keys: list[bytes]) -> list[AssetRecord]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, "record")
        records = []
        for key, raw in zip(keys, await pipe.execute(raise_on_error=False), strict=True):
            if raw is None:  # deleted since SCAN saw it
                continue
            try:
                if isinstance(raw, Exception):  # e.g. WRONGTYPE: someone else's key under our prefix
                    raise raw
                records.append(record_from_dict(json.loads(raw), max_version=STORED_MAX_VERSION))
            except UNAVAILABLE:
                raise
            except (ValueError, RecordInvalid, ResponseError) as exc:
                name = key.decode(errors="replace")
                log.warning("skipping unreadable record under %r: %s", name, str(exc)[:200])
        return records

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Every id the write script publishes, from any process, over pub/sub on this client's
        connection setup (gateway.state.redis_pubsub)."""
        await listen(self.client, subscriber)

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                await self.client.ping()
        except UNAVAILABLE as exc:
            raise unavailable("ping", exc) from exc

    async def close(self) -> None:
        for task in list(self._reading):
            task.cancel()
        await asyncio.gather(*self._reading, return_exceptions=True)
        await self.client.aclose()
        for client in self._also_close:
            await client.aclose()


def _read_error(exc: Exception, asset_id: str | None) -> Exception:
    """What one reader raises: StoreUnavailable when Redis could not serve, RecordUnreadable when
    its own key holds something else (`asset_id` names it), else the error itself (a bug)."""
    if isinstance(exc, UNAVAILABLE):
        error = unavailable("get", exc)
        error.__cause__ = exc
        return error
    if asset_id is not None and isinstance(exc, ResponseError):
        return _unreadable(asset_id, exc)
    return exc


def _unreadable(asset_id: str, exc: BaseException) -> RecordUnreadable:
    """Logged by name only: the stored value may be anything, and it never reaches a client."""
    log.warning(
        "stored value for %s is not a record (%s); that id answers 503 until a PUT repairs it",
        asset_key(asset_id), type(exc).__name__,
    )  # fmt: skip
    return RecordUnreadable(f"record {asset_id} unreadable: {type(exc).__name__}")


@dataclass(frozen=True, slots=True)
class PurgePlan:
    """What one write purges, decided against the version read before it (see PUT_SCRIPT)."""

    against: str  # the stored version the plan was decided against, '0' for none
    purge: Purge | None  # None: this write changes no live answer
    fallback: Purge | None = None  # what a hard purge names if the record changed meanwhile

    @classmethod
    def between(cls, stored: Any, new: AssetRecord) -> PurgePlan:
        """`stored`: the record field as read (None: no record; an exception: not our hash)."""
        try:
            if isinstance(stored, Exception):
                raise ValueError("not a record")
            old = (
                None
                if stored is None
                else record_from_dict(json.loads(stored), max_version=STORED_MAX_VERSION)
            )
        except (ValueError, RecursionError):  # RecordInvalid is a ValueError
            old, against = None, "unreadable"  # never matches: the purge is hard
        else:
            against = "0" if old is None else str(old.version)
        purge = plan_purge(old, new)
        return cls(against, purge, Purge(new.id, PurgeKind.HARD, (tag_key(new.id),), purge_paths(old, new)))

    def script_args(self) -> tuple[str, str, str, str]:
        named = self.purge or self.fallback
        if named is None:
            return "", "", "", ""
        fields = entry_fields(named)
        kind = self.purge.kind.value if self.purge else ""
        return kind, self.against, fields["keys"], fields["paths"]


NO_PLAN: Final = PurgePlan("", None)


def _args(record: AssetRecord) -> tuple[str, str, str]:
    return str(record.version), json.dumps(record_to_dict(record), separators=(",", ":")), record.id


def _write_results(reply: Sequence[Any]) -> list[WriteResult]:
    values = [int(value) for value in reply]
    return [
        WriteResult(outcome == 1, current_version=current, created=created == 1, unchanged=outcome == 2)
        for outcome, current, created in zip(values[0::3], values[1::3], values[2::3], strict=True)
    ]
