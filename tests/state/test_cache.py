"""The in-process cache: warm reads do no I/O, entries expire, misses are coalesced, and a backend
outage is never hidden past the TTL."""

from __future__ import annotations

import asyncio

import pytest

from gateway.models import AssetRecord
from gateway.state.base import StoreUnavailable, WriteResult
from gateway.state.cache import MISSING, NOT_CACHED, CachedAssetStore
from gateway.state.memory import MemoryAssetStore
from gateway.state.packed import unpack

pytestmark = pytest.mark.asyncio

TTL = 30.0


def record(asset_id: str = "a1", version: int = 1) -> AssetRecord:
    return AssetRecord(id=asset_id, version=version, object_key=f"k-{asset_id}", filename="f.pdf")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowStore(MemoryAssetStore):
    """A backend whose reads take a while and can be switched off, like a Redis going away."""

    def __init__(self, *records: AssetRecord) -> None:
        super().__init__(records)
        self.down = False
        self.delay = 0.0
        self.read_started = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when given, a read waits for it after reading
        self.pings = 0
        self.closed = False

    async def get(self, asset_id: str) -> AssetRecord | None:
        found = await super().get(asset_id)  # counts the read
        self.read_started.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay)
        if self.down:
            raise StoreUnavailable("backend down")
        return found

    async def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise StoreUnavailable("backend down")

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend() -> SlowStore:
    return SlowStore(record("a1"))


@pytest.fixture
def cache(backend: SlowStore, clock: FakeClock) -> CachedAssetStore:
    return CachedAssetStore(backend, ttl=TTL, size=1000, clock=clock)


def reads(store: SlowStore) -> int:
    return store.reads


async def test_warm_gets_do_no_backend_reads(cache: CachedAssetStore, backend: SlowStore) -> None:
    assert await cache.get("a1") == record("a1")
    assert reads(backend) == 1
    for _ in range(10):
        assert await cache.get("a1") == record("a1")
    assert reads(backend) == 1
    assert (cache.hits, cache.misses) == (10, 1)


async def test_missing_ids_are_cached(cache: CachedAssetStore, backend: SlowStore) -> None:
    assert await cache.get("nope") is None
    assert await cache.get("nope") is None
    assert reads(backend) == 1
    assert cache.hits == 1


async def test_entries_expire_after_ttl(
    cache: CachedAssetStore, backend: SlowStore, clock: FakeClock
) -> None:
    await cache.get("a1")
    await cache.get("nope")
    await backend.put(record("a1", 2))  # written elsewhere, invalidation lost
    await backend.put(record("nope", 1))
    clock.now += TTL - 0.5
    assert await cache.get("a1") == record("a1", 1)  # stale, but within the TTL bound
    assert await cache.get("nope") is None
    clock.now += 1
    assert await cache.get("a1") == record("a1", 2)
    assert await cache.get("nope") == record("nope", 1)
    assert reads(backend) == 4


async def test_invalidate_and_clear(cache: CachedAssetStore, backend: SlowStore) -> None:
    await cache.get("a1")
    await cache.get("b1")
    await backend.put(record("a1", 2))
    await backend.put(record("b1", 2))
    cache.invalidate("a1")
    assert await cache.get("a1") == record("a1", 2)
    assert await cache.get("b1") is None  # still the cached miss
    cache.clear()
    assert len(cache) == 0
    assert await cache.get("b1") == record("b1", 2)
    cache.invalidate("never-seen")  # no error


async def test_put_goes_through_and_drops_the_entry(cache: CachedAssetStore, backend: SlowStore) -> None:
    await cache.get("a1")
    assert await cache.put(record("a1", 2)) == WriteResult(applied=True, current_version=2)
    assert await cache.get("a1") == record("a1", 2)
    assert await cache.put(record("a1", 2)) == WriteResult(applied=False, current_version=2)
    assert await backend.get("a1") == record("a1", 2)


async def test_concurrent_misses_share_one_read(cache: CachedAssetStore, backend: SlowStore) -> None:
    backend.delay = 0.01
    results = await asyncio.gather(*(cache.get("a1") for _ in range(100)))
    assert results == [record("a1")] * 100
    assert reads(backend) == 1
    assert await cache.get("a1") == record("a1")
    assert reads(backend) == 1


async def test_backend_failure_reaches_every_waiter(cache: CachedAssetStore, backend: SlowStore) -> None:
    backend.delay = 0.01
    backend.down = True
    results = await asyncio.gather(*(cache.get("a1") for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert reads(backend) == 1
    assert len(cache) == 0  # failures are not cached
    backend.down = False
    assert await cache.get("a1") == record("a1")  # the next get reads again
    assert reads(backend) == 2


async def test_cached_entries_survive_an_outage_only_within_ttl(
    cache: CachedAssetStore, backend: SlowStore, clock: FakeClock
) -> None:
    await cache.get("a1")
    await cache.get("nope")
    backend.down = True
    assert await cache.get("a1") == record("a1")
    assert await cache.get("nope") is None
    with pytest.raises(StoreUnavailable):
        await cache.get("uncached")
    clock.now += TTL + 1
    with pytest.raises(StoreUnavailable):
        await cache.get("a1")
    with pytest.raises(StoreUnavailable):
        await cache.get("nope")


async def test_one_waiter_cancelled_does_not_cancel_the_shared_read(
    cache: CachedAssetStore, backend: SlowStore
) -> None:
    backend.gate = asyncio.Event()
    first = asyncio.create_task(cache.get("a1"))
    second = asyncio.create_task(cache.get("a1"))
    await backend.read_started.wait()
    first.cancel()
    backend.gate.set()
    assert await second == record("a1")
    with pytest.raises(asyncio.CancelledError):
        await first
    assert reads(backend) == 1


async def test_invalidation_during_a_read_is_not_lost(cache: CachedAssetStore, backend: SlowStore) -> None:
    """A read that started before a write must not park the old state in the cache."""
    backend.gate = asyncio.Event()
    reading = asyncio.create_task(cache.get("a1"))
    await backend.read_started.wait()  # the read is in flight and has seen version 1
    await cache.put(record("a1", 2))
    backend.gate.set()
    await reading
    assert await cache.get("a1") == record("a1", 2)


async def test_clearing_during_a_read_is_not_lost(cache: CachedAssetStore, backend: SlowStore) -> None:
    """The same for `clear()` (the invalidation channel came back after missing messages): a read
    in flight from before must not park what it saw in the freshly cleared cache."""
    backend.gate = asyncio.Event()
    reading = asyncio.create_task(cache.get("a1"))
    await backend.read_started.wait()  # the read is in flight and has seen version 1
    await backend.put(record("a1", 2))  # written while the channel was down: nobody was told
    cache.clear()
    backend.gate.set()
    assert await reading == record("a1")  # that caller asked before: it gets what was read
    assert await cache.get("a1") == record("a1", 2)


async def test_size_is_bounded(backend: SlowStore, clock: FakeClock) -> None:
    cache = CachedAssetStore(backend, ttl=TTL, size=10, clock=clock)
    for i in range(100):
        await backend.put(record(f"id{i}"))
        assert await cache.get(f"id{i}") == record(f"id{i}")
    for i in range(100):
        await cache.get(f"missing{i}")
    assert len(cache) <= 10


@pytest.mark.parametrize(("ttl", "size"), [(0, 1000), (TTL, 0)])
async def test_zero_ttl_or_size_disables_caching(backend: SlowStore, ttl: float, size: int) -> None:
    cache = CachedAssetStore(backend, ttl=ttl, size=size)
    for _ in range(3):
        assert await cache.get("a1") == record("a1")
    assert reads(backend) == 3
    assert len(cache) == 0


async def test_ping_and_close_reach_the_backend(cache: CachedAssetStore, backend: SlowStore) -> None:
    """Readiness asks the backend itself: a warm cache must not make a dead Redis look alive."""
    await cache.get("a1")
    await cache.ping()
    assert backend.pings == 1
    backend.down = True
    with pytest.raises(StoreUnavailable):
        await cache.ping()
    assert backend.pings == 2
    assert not backend.closed
    await cache.close()
    assert backend.closed
    assert len(cache) == 0


async def test_peek_reads_nothing_counts_nothing_and_honours_expiry(
    cache: CachedAssetStore, backend: SlowStore, clock: FakeClock
) -> None:
    assert cache.peek("a1") is NOT_CACHED
    assert cache.peek("nope") is NOT_CACHED
    found = await cache.get("a1")
    await cache.get("nope")
    counters = (cache.hits, cache.misses, reads(backend))
    held = cache.peek("a1")
    assert isinstance(held, bytes) and unpack(held, "a1") == found
    assert cache.peek("a1") is held  # the very object the cache holds
    assert cache.held_for("a1", found) is held  # what `found` was unpacked from
    assert cache.peek("nope") is MISSING
    assert (cache.hits, cache.misses, reads(backend)) == counters
    cache.invalidate("a1")
    assert cache.peek("a1") is NOT_CACHED
    clock.now += TTL + 1
    assert cache.peek("nope") is NOT_CACHED
    assert (cache.hits, cache.misses, reads(backend)) == counters


async def test_peek_with_caching_off_is_never_cached(backend: SlowStore) -> None:
    store = CachedAssetStore(backend, ttl=0, size=10)
    await store.get("a1")
    assert store.peek("a1") is NOT_CACHED


async def test_a_hot_record_is_unpacked_once(backend: SlowStore, clock: FakeClock) -> None:
    await backend.put(record("b1"))
    cache = CachedAssetStore(backend, ttl=TTL, size=10, clock=clock, unpacked=1)
    first = await cache.get("a1")
    assert await cache.get("a1") is first
    held = cache.peek("a1")
    await cache.get("b1")  # unpacked now, in a1's place
    again = await cache.get("a1")
    assert again == first and again is not first  # unpacked anew from the same held value
    assert cache.peek("a1") is held
    assert cache.held_for("a1", again) is held
    assert cache.held_for("a1", first) is None  # no longer what a lookup hands out
    assert reads(backend) == 2


async def test_held_for_names_only_what_a_lookup_hands_out(
    cache: CachedAssetStore, backend: SlowStore
) -> None:
    found = await cache.get("a1")
    assert await cache.get("nope") is None
    assert cache.held_for("a1", record("a1")) is None  # equal, but not the object handed out
    assert cache.held_for("a1", None) is None
    assert cache.held_for("nope", None) is MISSING
    assert cache.held_for("nope", found) is None
    assert cache.held_for("never-read", None) is None
    uncached = CachedAssetStore(backend, ttl=0, size=10)
    assert uncached.held_for("a1", await uncached.get("a1")) is None  # nothing held, caching off


CHANGES = ["invalidate", "put", "clear", "expiry"]


@pytest.mark.parametrize("change", CHANGES)
async def test_every_change_ends_the_held_value(
    cache: CachedAssetStore, clock: FakeClock, change: str
) -> None:
    found = await cache.get("a1")
    held = cache.held_for("a1", found)
    assert held is not None
    if change == "invalidate":
        cache.invalidate("a1")
    elif change == "put":
        await cache.put(record("a1", 2))
    elif change == "clear":
        cache.clear()
    else:
        clock.now += TTL + 1
    assert cache.peek("a1") is NOT_CACHED
    again = await cache.get("a1")
    assert cache.peek("a1") is not held  # what an answer built from `found` compares with
    assert cache.held_for("a1", again) is cache.peek("a1")


async def test_legacy_paths_are_held_packed_with_their_record_id(
    backend: SlowStore, clock: FakeClock
) -> None:
    path = "/government/uploads/system/f.pdf"
    await backend.put(AssetRecord(id="L1", version=1, object_key="k", filename="f.pdf", legacy_url_path=path))
    cache = CachedAssetStore(backend, ttl=TTL, size=10, clock=clock, unpacked=1)
    found = await cache.get_by_legacy_path(path)
    assert found is not None and found.id == "L1"
    assert await cache.get_by_legacy_path(path) is found
    await cache.get("a1")  # unpacked now, in the path's place
    assert await cache.get_by_legacy_path(path) == found
    held = cache.peek(path)
    assert isinstance(held, bytes) and unpack(held, path) == found
    assert cache.peek("L1") is NOT_CACHED  # held under the path only
    assert reads(backend) == 2
