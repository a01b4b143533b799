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
from gateway.records import RecordInvalid, record_from_stored, record_to_dict
from gateway.state.base import RecordUnreadable, StoreUnavailable, Subscriber, WriteResult
from gateway.state.redis_client import INVALIDATION_CHANNEL, UNAVAILABLE, RedisClient
from gateway.state.redis_pubsub import listen

__all__ = ["INVALIDATION_CHANNEL", "UNAVAILABLE", "RedisAssetStore", "RedisClient", "asset_key"]

log = logging.getLogger(__name__)

# One script for one record or a batch. Versions are compared as canonical decimal strings, not
# Lua numbers: Lua's doubles lose precision above 2^53 and stored records may carry versions up to
# 2^63 - 1 (written before versions were capped, see gateway.records.MAX_VERSION).
# ARGV: channel, mode, purging, indexed, then for each record nine values: version, record JSON,
# asset id, its legacy field ('' or 'L'/'D' + normalised path: L while the record is live, D once
# deleted), the legacy path the caller expects is stored now ('' for none), and the four purge
# values described below. Mode: '' a plain PUT; digits: a
# PATCH's base version (one record only: the stored version must still be this one, '0' for
# none); '*' a forced write by ops, applied whatever the stored version is (a legacy path held by
# another live record still refuses it). Indexed: '1' this call keeps the legacy path index (see
# below); '0' the caller does, on Cluster.
# KEYS for each record: its asset key; when indexed, the index key of its own legacy path if it
# has one, then the index key of the expected stored path if that is another one; with purges on,
# the purge stream last.
# A stored value that cannot be a record (not a hash, a version that is not a canonical decimal,
# a record field that is missing or not a JSON object) counts as no record, so a PUT repairs it;
# the gateways never serve it meanwhile (gateway.state.base.RecordUnreadable).
# Returns for each record: outcome (1 written, 0 refused, 2 this very record is already stored: a
# repeated write, as when redis-py resends a command whose reply was lost; 3 another live record
# holds the path; 4 the stored path is not the expected one: call again naming it), the version
# stored after the call, 1 if the key was empty, and a detail: for 3 the holder's id, for 4 the
# stored path, otherwise the legacy field stored before the call. A batch stops at the first 4,
# so the records after it are written after it, in order, when the caller sends them again.
# The id (and every legacy path the write touches) is published from inside the script, so it is
# announced exactly when a write is applied, with no window between the two and no extra round
# trip. The same goes for a CDN purge (DESIGN 2.9): purging is '1' when purges are on (the purge
# stream is then the last KEY) and each record's purge values are the purge kind ('', soft, hard),
# the version that kind was decided against ('0': no record), and the purge's keys and paths
# (gateway.cdn.queue); the purge is enqueued exactly when the write is applied, and made hard when
# the record changed after the caller read it (a planned kind may then be wrong; hard is always
# safe). PUBLISH has no key: a one-key call is single-slot on Cluster, where a PUBLISH reaches every
# node; batches are sent only to a single node; on Cluster purges are off here and enqueued by the
# caller (the stream's slot is not the record's).
#
# The legacy path index: one string key per path, `legacy:{<path>}`, holding 'L' or 'D' and the id
# of the record that holds the path (live, or deleted: its path answers 410 until a live record
# takes it). The hash tag is the path itself, so the index spreads over a Cluster like the assets
# do. On a single node (and Sentinel) the claim, the record and the release of a path it moved
# away from change in this one script. On Cluster the index key and the asset key live in
# different slots, so no script can hold both; the caller runs the protocol in
# `RedisAssetStore._put_clustered` instead.
PUT_SCRIPT: Final = """
local channel, mode, purging, indexed = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4] == '1'
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
local replies = {}
local k = 1
for a = 5, #ARGV, 9 do
  local incoming, payload, id, legacy, expected = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local key = KEYS[k]
  k = k + 1
  local path, live = string.sub(legacy, 2), string.sub(legacy, 1, 1) == 'L'
  local path_key, old_key = nil, nil
  if indexed and legacy ~= '' then
    path_key = KEYS[k]
    k = k + 1
  end
  if indexed and expected ~= '' and expected ~= path then
    old_key = KEYS[k]
    k = k + 1
  end
  local kind = redis.call('TYPE', key)['ok']
  local current = readable_version(key, kind)
  local stored = ''
  if current then
    stored = redis.call('HGET', key, 'legacy') or ''
  end
  local old = string.sub(stored, 2)
  local outcome, created, detail = 1, 0, stored
  local holder = nil
  if path_key then
    holder = redis.call('GET', path_key)
  end
  if mode ~= '*' and current
      and (#incoming < #current or (#incoming == #current and incoming <= current)) then
    outcome = 0
    if incoming == current and redis.call('HGET', key, 'record') == payload then
      outcome = 2
    end
  elseif mode ~= '' and mode ~= '*' and (current or '0') ~= mode then
    outcome = 0
  elseif indexed and old ~= '' and old ~= path and old ~= expected then
    outcome, detail = 4, old
  elseif live and holder and string.sub(holder, 1, 1) == 'L' and string.sub(holder, 2) ~= id then
    outcome, detail = 3, string.sub(holder, 2)
  else
    if kind ~= 'none' and not current then
      redis.call('DEL', key)  -- an unreadable value: nothing of it may survive the repair
    end
    redis.call('HSET', key, 'version', incoming, 'record', payload)
    if legacy ~= '' then
      redis.call('HSET', key, 'legacy', legacy)
    elseif stored ~= '' then
      redis.call('HDEL', key, 'legacy')
    end
    redis.call('PUBLISH', channel, id)
    if purging then
      local purge = ARGV[a + 5]
      if (current or '0') ~= ARGV[a + 6] then
        purge = 'hard'
      end
      if purge ~= '' then
        local keys, paths = ARGV[a + 7], ARGV[a + 8]
        redis.call('XADD', KEYS[#KEYS], '*', 'id', id, 'kind', purge, 'keys', keys, 'paths', paths)
      end
    end
    if path_key then
      if live then
        redis.call('SET', path_key, 'L' .. id)
      elseif not holder or string.sub(holder, 2) == id then
        redis.call('SET', path_key, 'D' .. id)
      end
    end
    if legacy ~= '' then
      redis.call('PUBLISH', channel, path)
    end
    if old ~= '' and old ~= path then
      if old_key then
        local previous = redis.call('GET', old_key)
        if previous and string.sub(previous, 2) == id then
          redis.call('DEL', old_key)
        end
      end
      redis.call('PUBLISH', channel, old)
    end
    if kind == 'none' then
      created = 1
    end
    current = incoming
  end
  replies[#replies + 1] = outcome
  replies[#replies + 1] = current or '0'
  replies[#replies + 1] = created
  replies[#replies + 1] = detail
  if outcome == 4 then
    break
  end
end
return replies
"""

# The record holding a legacy path, in one round trip (single node and Sentinel). It reads the
# asset key it finds in the index, which a script may do only where every key lives on one node:
# on Cluster the lookup is two commands (`_lookup_clustered`).
LOOKUP_SCRIPT: Final = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  return false
end
return redis.call('HGET', ARGV[1] .. string.sub(holder, 2) .. '}', 'record')
"""

# The Cluster protocol's steps on one index key, each a compare-and-set. ARGV: operation, id, value.
# Besides 'L' and 'D' entries, Cluster has 'P<id>:<ms>': a claim whose record write is under way
# (ms: Redis server time of the claim), so a racing writer can tell "being taken" from "left over".
#   claim:   take the path (as P) unless another record's L or P entry is there; `value` is such an
#            entry the caller found stale, which may be taken over while it is still the entry.
#            Returns {1, the entry before} or {0, the entry, its age in ms (P entries, else -1)}.
#   commit:  our record is written live: our P entry becomes L.
#   restore: undo a claim whose write was refused: put back `value` (the entry before).
#   retire:  the record was written deleted: mark its entry D (or create it) unless another
#            record holds the path.
#   release: the record moved away from this path: delete its entry.
INDEX_SCRIPT: Final = """
local operation, id, value = ARGV[1], ARGV[2], ARGV[3]
local holder = redis.call('GET', KEYS[1])
local owner = holder and string.match(holder, '^.([^:]*)')
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if operation == 'claim' then
  local kind = holder and string.sub(holder, 1, 1)
  if holder and kind ~= 'D' and owner ~= id and holder ~= value then
    local age = -1
    if kind == 'P' then
      age = now - tonumber(string.match(holder, ':(%d+)$'))
    end
    return {0, holder, age}
  end
  redis.call('SET', KEYS[1], 'P' .. id .. ':' .. now)
  return {1, holder or ''}
end
if holder and owner ~= id then
  return {0, holder}
end
if operation == 'commit' and holder and string.sub(holder, 1, 1) == 'P' then
  redis.call('SET', KEYS[1], 'L' .. id)
elseif operation == 'restore' and holder and string.sub(holder, 1, 1) == 'P' then
  if value == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], value)
  end
elseif operation == 'retire' then
  redis.call('SET', KEYS[1], 'D' .. id)
elseif operation == 'release' and holder then
  redis.call('DEL', KEYS[1])
end
return {1, holder or ''}
"""
# The record field of every key, in one command: a batch of reads (see `_read`) costs redis-py one
# command and hiredis one reply instead of a command and a reply per key. A key holding something
# other than a hash gives its own error in its place (pcall), so only that reader fails. On Cluster
# a batch's keys live in different slots, which no script may read: a pipeline there.
READ_SCRIPT: Final = """
local values = {}
for i, key in ipairs(KEYS) do
  values[i] = redis.pcall('HGET', key, 'record')
end
return values
"""
KEY_PATTERN: Final = "asset:*"
CLUSTER_WRITE_CONCURRENCY: Final = 64  # Cluster pipelines refuse scripts: concurrent calls instead
# Seconds one read or ping may take in all, retries and reconnects included: a hung
# Redis (stopped, partitioned) must turn into a prompt 503, not a request held for seconds.
DEADLINE: Final = 0.9
FORCE: Final = "*"  # the script's mode for a forced write


ASSET_KEY_PREFIX: Final = "asset:{"
MOVED_RETRIES: Final = 3  # a record whose legacy path keeps moving under a write: give up, 503
# Cluster: a claim older than this whose record does not hold the path was left by a writer that
# stopped; younger, it may be a write under way, and a racing writer is refused.
CLAIM_LEASE_MS: Final = 10_000


def asset_key(asset_id: str) -> str:
    """The braces are a Cluster hash tag: every key we ever add for one asset lands in one slot."""
    return f"{ASSET_KEY_PREFIX}{asset_id}}}"


def legacy_key(path: str) -> str:
    """The index key of a normalised legacy path, hash-tagged to the path (which never holds a
    brace: normalising percent-encodes them)."""
    return f"legacy:{{{path}}}"


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
        self._lookup = client.register_script(LOOKUP_SCRIPT)
        self._index_script = client.register_script(INDEX_SCRIPT)
        self._read_script = client.register_script(READ_SCRIPT)
        # Loaded up front rather than on the first NOSCRIPT: redis-py's Cluster client, retrying
        # many concurrent NOSCRIPT calls, loses connections and resends commands.
        self._script_loaded = False
        self._loading = asyncio.Lock()
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
            return record_from_stored(raw)
        except (ValueError, RecursionError) as exc:  # RecordInvalid is a ValueError
            raise _unreadable(asset_id, exc) from None

    def _read(self, asset_id: str) -> asyncio.Future[Any]:
        """The stored JSON of one record (None when there is none); raises StoreUnavailable.

        Every read asked for in the same event-loop turn goes to Redis together (`_read_batch`):
        under load many requests miss the cache in the same turn, and redis-py's cost is mostly
        per command and per round trip. Each caller waits on a future of its own, so one giving
        up (a client disconnecting) cancels nobody else's read.
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
        """One round trip for the batch: one HGET alone, else one READ_SCRIPT call (on Cluster a
        pipeline, which costs redis-py several times the CPU per key). An error that belongs to
        one key (WRONGTYPE: a value that is not our hash) fails that id alone; only Redis failing
        fails them all."""
        ids = list(batch)
        values: list[Any]
        try:
            async with asyncio.timeout(self.deadline):
                if len(ids) == 1:
                    try:
                        values = [await self.client.hget(asset_key(ids[0]), "record")]
                    except ResponseError as exc:
                        if not _wrong_type(exc):
                            raise  # Redis refused the connection or command, not this key
                        values = [exc]
                elif not self._cluster:
                    await self._load_script()
                    values = await self._read_script(keys=[asset_key(asset_id) for asset_id in ids])
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

    async def get_by_legacy_path(self, path: str) -> AssetRecord | None:
        self.reads += 1
        try:
            async with asyncio.timeout(self.deadline):  # as for reads by id
                if self._cluster:
                    raw = await self._lookup_clustered(path)
                else:
                    await self._load_script()
                    raw = await self._lookup(keys=[legacy_key(path)], args=[ASSET_KEY_PREFIX])
        except UNAVAILABLE as exc:
            raise unavailable("get", exc) from exc
        except ResponseError as exc:  # WRONGTYPE: a hand-made value under our index or asset key
            raise _unreadable_path(exc) from None
        if raw is None:
            return None
        try:
            record = record_from_stored(raw)
        except (ValueError, RecursionError) as exc:  # RecordInvalid is a ValueError
            raise _unreadable_path(exc) from None
        # The index names the last holder; a holder that has since moved away (a Cluster write
        # interrupted between its steps) does not answer for the path.
        return record if record.legacy_url_path == path else None

    async def _lookup_clustered(self, path: str) -> Any:
        entry = await self.client.get(legacy_key(path))
        if entry is None:
            return None
        return await self.client.hget(asset_key(_entry_id(entry.decode())), "record")

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
            if self._cluster:
                return await self._put_clustered(record, mode, plans[0])
            expected = record.legacy_url_path or ""
            for _ in range(MOVED_RETRIES):
                outcome = _write_results(await self._call([record], plans, mode, [expected]))[0]
                if outcome.moved_from is None:
                    return outcome.result
                expected = outcome.moved_from  # the stored path is another one: name it too
        except UNAVAILABLE as exc:
            raise unavailable("put", exc) from exc
        raise StoreUnavailable(f"redis put failed: the legacy path of {record.id} kept moving")

    async def _call(
        self,
        records: Sequence[AssetRecord],
        plans: Sequence[PurgePlan],
        mode: str,
        expected: Sequence[str] | None,
    ) -> Any:
        """One script call; purges inside it except on Cluster (see PUT_SCRIPT). `expected`: the
        legacy path each record is expected to hold now, when the script keeps the index; None on
        Cluster, where `_put_clustered` does."""
        inline = self.purge and not self._cluster
        keys: list[str] = []
        args = [INVALIDATION_CHANNEL, mode, "1" if inline else "", "0" if expected is None else "1"]
        for n, (record, plan) in enumerate(zip(records, plans, strict=True)):
            held = "" if expected is None else expected[n]
            keys.extend([asset_key(record.id)] if expected is None else _keys(record, held))
            args.extend(_args(record, held))
            args.extend(plan.script_args())
        if inline:
            keys.append(PURGE_STREAM)
        return await self._put(keys=keys, args=args)

    async def _put_clustered(self, record: AssetRecord, mode: str, plan: PurgePlan) -> WriteResult:
        """The write on Cluster, where the index key and the asset key are in different slots:
        1. claim the path: a pending entry `P<id>:<ms>` (compare-and-set on its index key). Another
           record's entry refuses the write (409) unless it is left over: an L entry whose record
           no longer holds the path live, or a P entry older than CLAIM_LEASE_MS whose record does
           not hold it either; a left-over entry is taken over while it is still the entry;
        2. the versioned write of the record, which reports the legacy field it replaced;
        3. applied: commit the claim (P → L), mark a deleted record's entry D, release the path it
           moved away from; refused: restore the entry the claim replaced;
        4. applied: enqueue its CDN purge (`_enqueue_after`).
        A writer stopping anywhere leaves at worst an entry whose record does not hold the path:
        lookups check the record's path and ignore it, and a later claim takes it over."""
        path = record.legacy_url_path
        claimed: str | None = None  # the entry our claim replaced
        if path is not None and not record.deleted:
            taken, entry, age = await self._index("claim", path, record.id)
            if not taken:
                holder = _entry_id(entry)
                left_over = (age < 0 or age > CLAIM_LEASE_MS) and not await self._holds(holder, path)
                if not left_over:
                    return WriteResult(False, current_version=0, legacy_holder=holder)
                taken, entry, _ = await self._index("claim", path, record.id, entry)
                if not taken:
                    return WriteResult(False, current_version=0, legacy_holder=_entry_id(entry))
            claimed = entry
        written = _write_results(await self._call([record], [plan], mode, None))[0]
        result, stored = written.result, written.stored_before
        if path is not None and claimed is not None:
            await self._index("commit" if result.applied or stored == "L" + path else "restore", path,
                              record.id, claimed)  # fmt: skip
        if not result.applied:
            return result
        if path is not None and record.deleted:
            await self._index("retire", path, record.id)
        old = stored[1:]
        if old and old != path:
            await self._index("release", old, record.id)
        await self._enqueue_after([plan])
        return result

    async def _index(
        self, operation: str, path: str, asset_id: str, value: str = ""
    ) -> tuple[bool, str, int]:
        reply = await self._index_script(keys=[legacy_key(path)], args=[operation, asset_id, value])
        entry = reply[1]
        age = int(reply[2]) if len(reply) > 2 else -1
        return int(reply[0]) == 1, entry.decode() if isinstance(entry, bytes) else str(entry), age

    async def _holds(self, asset_id: str, path: str) -> bool:
        """Whether the record `asset_id` is live and holds `path` as stored now."""
        raw = await self.client.hget(asset_key(asset_id), "legacy")
        return raw is not None and raw.decode() == "L" + path

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
        if self._cluster:
            results: list[WriteResult | StoreUnavailable] = []
            for start in range(0, len(records), CLUSTER_WRITE_CONCURRENCY):
                chunk = records[start : start + CLUSTER_WRITE_CONCURRENCY]
                results.extend(await asyncio.gather(*(self._put_or_error(r) for r in chunk)))
            return results
        outcomes: list[WriteResult | StoreUnavailable] = []
        while len(outcomes) < len(records):
            rest = records[len(outcomes) :]
            try:
                await self._load_script()
                plans = await self._plan_purges(rest)
                expected = [record.legacy_url_path or "" for record in rest]
                reply = await self._call(rest, plans, "", expected)
            except UNAVAILABLE as exc:
                return outcomes + [unavailable("put", exc)] * len(rest)
            for written in _write_results(reply):
                # A record whose stored legacy path is another one: alone, naming that path.
                moved = written.moved_from is not None
                outcomes.append(await self._put_or_error(rest[0]) if moved else written.result)
                rest = rest[1:]
        return outcomes

    async def _load_script(self) -> None:
        if self._script_loaded:
            return
        # One load at a time: a batch on Cluster starts many writes at once, and concurrent
        # SCRIPT LOADs to every primary break redis-py's Cluster connections.
        async with self._loading:
            if not self._script_loaded:
                batch_reads = () if self._cluster else (READ_SCRIPT,)  # Cluster reads by pipeline
                for script in (PUT_SCRIPT, LOOKUP_SCRIPT, INDEX_SCRIPT, *batch_reads):
                    await self.client.script_load(script)  # on Cluster: every primary
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
                records.append(record_from_stored(raw))
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
    if asset_id is not None and _wrong_type(exc):
        return _unreadable(asset_id, exc)
    return exc


def _wrong_type(exc: Exception) -> bool:
    """The one error an HGET gives for its own key: a value there that is not a hash."""
    return isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")


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
            old = None if stored is None else record_from_stored(stored)
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


def _unreadable_path(exc: BaseException) -> RecordUnreadable:
    """Like `_unreadable`, for the record a legacy path leads to (the path is not logged)."""
    log.warning("the record a legacy path leads to is not readable (%s)", type(exc).__name__)
    return RecordUnreadable(f"record at a legacy path unreadable: {type(exc).__name__}")


def _entry_id(entry: str) -> str:
    """The asset id in an index entry: 'L<id>', 'D<id>' or 'P<id>:<ms>'."""
    return entry[1:].split(":", 1)[0]


def _legacy_field(record: AssetRecord) -> str:
    if record.legacy_url_path is None:
        return ""
    return ("D" if record.deleted else "L") + record.legacy_url_path


def _args(record: AssetRecord, expected: str) -> tuple[str, str, str, str, str]:
    payload = json.dumps(record_to_dict(record), separators=(",", ":"))
    return str(record.version), payload, record.id, _legacy_field(record), expected


def _keys(record: AssetRecord, expected: str) -> list[str]:
    """The keys `PUT_SCRIPT` reads for one record when it keeps the index, in its order."""
    keys = [asset_key(record.id)]
    path = record.legacy_url_path
    if path is not None:
        keys.append(legacy_key(path))
    if expected and expected != path:
        keys.append(legacy_key(expected))
    return keys


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: WriteResult
    moved_from: str | None  # outcome 4: the stored legacy path the caller did not name
    stored_before: str  # the legacy field the write replaced ('' for none)


def _write_results(reply: Sequence[Any]) -> list[_Outcome]:
    outcomes = []
    for n in range(0, len(reply), 4):
        outcome, current, created = (int(value) for value in reply[n : n + 3])
        raw = reply[n + 3]
        detail = raw.decode() if isinstance(raw, bytes) else str(raw)
        result = WriteResult(
            outcome == 1, current_version=current, created=created == 1, unchanged=outcome == 2,
            legacy_holder=detail if outcome == 3 else None,
        )  # fmt: skip
        moved = detail if outcome == 4 else None
        outcomes.append(_Outcome(result, moved, detail if outcome in (0, 1, 2) else ""))
    return outcomes
