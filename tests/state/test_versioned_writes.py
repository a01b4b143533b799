"""The write rules the admin API and the importer build on, against every backend (in-process, one
redis-server, a 3-node cluster): created vs replaced, the base-version check, batched writes, and
enumerating every record."""

from __future__ import annotations

import logging

import pytest
import redis

from gateway.models import AssetRecord
from gateway.state.base import BulkAssetStore, StoreUnavailable, WriteResult
from gateway.state.factory import open_store
from gateway.state.redis import RedisAssetStore

pytestmark = pytest.mark.asyncio


def record(asset_id: str, version: int = 1, **fields: object) -> AssetRecord:
    return AssetRecord(id=asset_id, version=version, object_key=f"k-{asset_id}", filename="f.pdf", **fields)  # type: ignore[arg-type]


async def test_created_only_for_the_first_write_and_a_repeat_is_unchanged(bulk_store: BulkAssetStore) -> None:
    first = await bulk_store.put(record("c1", 1))
    assert (first.applied, first.created) == (True, True)
    second = await bulk_store.put(record("c1", 2))
    assert (second.applied, second.created) == (True, False)
    repeated = await bulk_store.put(record("c1", 2))
    assert (repeated.applied, repeated.created, repeated.unchanged) == (False, False, True)
    conflicting = await bulk_store.put(record("c1", 2, draft=True))
    assert (conflicting.applied, conflicting.unchanged) == (False, False)
    assert await bulk_store.get("c1") == record("c1", 2)


async def test_base_version_must_still_be_the_stored_one(bulk_store: BulkAssetStore) -> None:
    await bulk_store.put(record("b1", 1))
    assert await bulk_store.put(record("b1", 2, draft=True), base_version=1) == WriteResult(True, 2)
    # Read at 1, but 2 landed meanwhile: refused with the version now stored, below ours.
    assert await bulk_store.put(record("b1", 3), base_version=1) == WriteResult(False, 2)
    # Stale wins over a base mismatch: the caller must not retry this one.
    assert await bulk_store.put(record("b1", 2), base_version=1) == WriteResult(False, 2)
    assert await bulk_store.get("b1") == record("b1", 2, draft=True)
    assert await bulk_store.put(record("new", 1), base_version=0) == WriteResult(True, 1)
    assert await bulk_store.put(record("new2", 1), base_version=5) == WriteResult(False, 0)
    assert await bulk_store.get("new2") is None


async def test_put_many_reports_each_record_in_order(bulk_store: BulkAssetStore) -> None:
    await bulk_store.put(record("same", 3))
    await bulk_store.put(record("newer", 9))
    await bulk_store.put(record("older", 1))
    outcomes = await bulk_store.put_many(
        [record("fresh", 1), record("same", 3), record("newer", 4), record("older", 2)]
    )
    expected = [WriteResult(True, 1), WriteResult(False, 3), WriteResult(False, 9), WriteResult(True, 2)]
    assert outcomes == expected
    assert [o.created for o in outcomes if isinstance(o, WriteResult)] == [True, False, False, False]
    assert await bulk_store.get("older") == record("older", 2)


async def test_put_many_and_scan_many_records(bulk_store: BulkAssetStore) -> None:
    records = [record(f"r{n:05}", n % 7 + 1) for n in range(2500)]
    for start in range(0, len(records), 500):
        outcomes = await bulk_store.put_many(records[start : start + 500])
        assert all(isinstance(o, WriteResult) and o.applied for o in outcomes)
    batches = [batch async for batch in bulk_store.scan(batch_size=1000)]
    assert all(0 < len(batch) <= 1000 for batch in batches)
    found = {r.id: r for batch in batches for r in batch}
    assert found == {r.id: r for r in records}  # every record, whole (SCAN may repeat, never omit)


async def test_scan_of_an_empty_store(bulk_store: BulkAssetStore) -> None:
    assert [batch async for batch in bulk_store.scan()] == []


async def test_scan_skips_unreadable_records(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisAssetStore)
    await store.put(record("good"))
    raw = redis.Redis.from_url(redis_url)
    raw.hset("asset:{broken}", mapping={"version": "1", "record": "{not json"})
    raw.set("asset:unrelated", "x")  # not a hash: never read as a record
    raw.close()
    with caplog.at_level(logging.WARNING):
        found = [r.id async for batch in store.scan() for r in batch]
    await store.close()
    assert found == ["good"]
    assert "asset:{broken}" in caplog.text
    assert "asset:unrelated" in caplog.text


async def test_put_many_when_redis_is_unreachable(redis_server_down_url: str) -> None:
    store = open_store(redis_server_down_url)
    assert isinstance(store, RedisAssetStore)
    outcomes = await store.put_many([record("x1"), record("x2")])
    assert len(outcomes) == 2
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    with pytest.raises(StoreUnavailable):
        [batch async for batch in store.scan()]
    await store.close()


@pytest.fixture
def redis_server_down_url() -> str:
    from tests.servers import free_port

    return f"redis://127.0.0.1:{free_port()}/0"
