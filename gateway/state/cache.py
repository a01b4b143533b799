"""An in-process cache in front of any AssetStore, so a warm request does no I/O at all.

Bounded in size and age: a lost invalidation is healed by the TTL, and memory cannot grow with the
number of ids requested (missing ids are cached too, so probing random ids cannot hammer Redis).
Concurrent misses for one id share a single backend read, so a hot file expiring does not send a
burst of identical reads to Redis. Nothing stale is served once its TTL has passed: when the backend
is down and the entry has expired, StoreUnavailable reaches the caller, which answers 503.

Lookups by legacy path are cached the same way under the path itself (paths start with '/', ids
never do). Every write publishes the legacy paths it touches as well as the id, so a path that
moves to another record, or away from this one, is forgotten like a changed id.

A cached record is held packed (gateway.state.packed: ~280 bytes where the record object and its
strings take ~800), and unpacked when a lookup needs it; the records unpacked most recently are
kept too, so a hot record is unpacked once, not on every lookup.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

from gateway.models import AssetRecord
from gateway.state.base import AssetStore, Subscriber, WriteResult
from gateway.state.expiring import ExpiringDict
from gateway.state.packed import PackedRecord, pack, unpack

# Unpacked records kept, the most recently used: the records hot enough to matter, at ~1 KB each.
UNPACKED_SIZE: Final = 2048


class Missing:
    """Marker for "the store has no record for this id", distinct from "not cached"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


class NotCached:
    """Marker returned by `peek` for "nothing cached for this id (or it has expired)"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_CACHED"


NOT_CACHED: Final = NotCached()


class _Flight:
    """One backend read in progress; `stale` is set when an invalidation overtakes it."""

    __slots__ = ("stale", "task")

    def __init__(self) -> None:
        self.stale = False
        self.task: asyncio.Task[AssetRecord | None] | None = None


def _observe(task: asyncio.Task[AssetRecord | None]) -> None:
    """Mark the exception as retrieved: every waiter may have been cancelled before it arrived."""
    if not task.cancelled():
        task.exception()


class CachedAssetStore:
    """An AssetStore that answers from memory while an entry is younger than `ttl` seconds.

    ttl <= 0 or size <= 0 turns caching off: every get reads the backend. `unpacked`: how many
    unpacked records to keep (at least one).
    """

    def __init__(
        self,
        store: AssetStore,
        ttl: float,
        size: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        unpacked: int = UNPACKED_SIZE,
    ) -> None:
        self._store = store
        self.enabled = ttl > 0 and size > 0
        self._cache: ExpiringDict[str, PackedRecord | Missing] = ExpiringDict(
            max(size, 1), max(ttl, 0.0), clock
        )
        # key -> (the packed value held when it was unpacked, the record), least recently used first
        self._unpacked: OrderedDict[str, tuple[PackedRecord, AssetRecord]] = OrderedDict()
        self._unpacked_size = max(unpacked, 1)
        self._flights: dict[str, _Flight] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    async def get(self, asset_id: str) -> AssetRecord | None:
        return await self._cached(asset_id, self._store.get)

    async def get_by_legacy_path(self, path: str) -> AssetRecord | None:
        return await self._cached(path, self._store.get_by_legacy_path)

    async def _cached(
        self, key: str, read: Callable[[str], Awaitable[AssetRecord | None]]
    ) -> AssetRecord | None:
        if not self.enabled:
            self.misses += 1
            return await read(key)
        try:
            held = self._cache[key]
        except KeyError:
            pass
        else:
            self.hits += 1
            return None if isinstance(held, Missing) else self._record(key, held)
        self.misses += 1
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
            flight.task = asyncio.create_task(self._load(key, read, flight))
            flight.task.add_done_callback(_observe)
        assert flight.task is not None
        # shield: one waiter giving up (a client disconnecting) must not cancel the shared read.
        return await asyncio.shield(flight.task)

    async def get_uncached(self, asset_id: str) -> AssetRecord | None:
        """The stored record, read from the backend whatever this cache holds (the admin API answers
        and merges from the store itself, never from a copy that may be stale)."""
        return await self._store.get(asset_id)

    def count_hit(self) -> None:
        """Count a lookup answered without calling `get` (a reused finished answer) as the hit
        the full evaluation's `get` would have been, so the cache metrics stay comparable."""
        self.hits += 1

    async def subscribe(self, subscriber: Subscriber) -> None:
        """The backend's invalidations (gateway.state.base.AssetStore.subscribe)."""
        await self._store.subscribe(subscriber)

    def peek(self, asset_id: str) -> PackedRecord | Missing | NotCached:
        """The value cached for `asset_id` (a packed record, or MISSING for a cached absence), or
        NOT_CACHED: no backend read, no hit or miss counted, nothing unpacked, an expired entry is
        NOT_CACHED. Every write, invalidation, clear or expiry ends the very object returned, so
        the answer cache (gateway.http.answers) compares it by identity with what `held_for` gave
        when the answer was built."""
        if not self.enabled:
            return NOT_CACHED
        try:
            return self._cache[asset_id]
        except KeyError:
            return NOT_CACHED

    def held_for(self, asset_id: str, record: AssetRecord | None) -> PackedRecord | Missing | None:
        """What `peek(asset_id)` returns while `record` (None: no record) is the very record a
        lookup of `asset_id` hands out, unpacked from the value held now; None when it is not."""
        held = self.peek(asset_id)
        if record is None:
            return MISSING if held is MISSING else None
        unpacked = self._unpacked.get(asset_id)
        if unpacked is not None and unpacked[0] is held and unpacked[1] is record:
            return unpacked[0]
        return None

    def _record(self, key: str, held: PackedRecord) -> AssetRecord:
        """The record `held` packs, unpacked once while it stays among the most recently used."""
        unpacked = self._unpacked.get(key)
        if unpacked is not None and unpacked[0] is held:
            self._unpacked.move_to_end(key)
            return unpacked[1]
        record = unpack(held, key)
        self._keep_unpacked(key, held, record)
        return record

    def _keep_unpacked(self, key: str, held: PackedRecord, record: AssetRecord) -> None:
        kept = self._unpacked
        kept[key] = (held, record)
        kept.move_to_end(key)
        if len(kept) > self._unpacked_size:
            kept.popitem(last=False)

    async def _load(
        self, key: str, read: Callable[[str], Awaitable[AssetRecord | None]], flight: _Flight
    ) -> AssetRecord | None:
        try:
            record = await read(key)
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
        if not flight.stale:
            if record is None:
                self._cache[key] = MISSING
            else:
                held = pack(record, key)
                self._cache[key] = held
                self._keep_unpacked(key, held, record)
        return record

    async def put(
        self, record: AssetRecord, *, base_version: int | None = None, force: bool = False
    ) -> WriteResult:
        try:
            return await self._store.put(record, base_version=base_version, force=force)
        finally:
            # Also on failure: a timed-out write may still have been applied. (A path the record
            # moved away from is announced by the store, like every write from elsewhere.)
            self.invalidate(record.id)
            if record.legacy_url_path is not None:
                self.invalidate(record.legacy_url_path)

    def invalidate(self, asset_id: str) -> None:
        """Forget one id or legacy path, including a read in flight that may have seen the old state."""
        self._cache.discard(asset_id)
        self._unpacked.pop(asset_id, None)
        flight = self._flights.pop(asset_id, None)
        if flight is not None:
            flight.stale = True

    def clear(self) -> None:
        """Forget everything, e.g. after the invalidation channel was lost and messages missed."""
        self._cache.clear()
        self._unpacked.clear()
        for flight in self._flights.values():
            flight.stale = True
        self._flights.clear()

    async def ping(self) -> None:
        await self._store.ping()

    async def close(self) -> None:
        self.clear()
        await self._store.close()
