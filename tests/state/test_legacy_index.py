"""The legacy path index (DESIGN 2.8) on every backend: a path belongs to at most one record that
is not deleted, a deleted record's path answers until another record takes it, a moved path is
freed, and racing writers never both win."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis

from gateway.models import AssetRecord
from gateway.state.base import BulkAssetStore
from gateway.state.factory import open_store
from gateway.state.redis import asset_key, legacy_key
from tests.servers import RedisCluster

pytestmark = pytest.mark.asyncio

PATH = "/government/uploads/system/uploads/attachment_data/file/1/budget.pdf"
OTHER = "/government/uploads/system/uploads/attachment_data/file/2/budget.pdf"


def record(asset_id: str, version: int = 1, path: str | None = PATH, **fields: object) -> AssetRecord:
    return AssetRecord(
        id=asset_id, version=version, object_key=f"k-{asset_id}", filename="budget.pdf",
        legacy_url_path=path, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


async def found(store: BulkAssetStore, path: str) -> str | None:
    held = await store.get_by_legacy_path(path)
    return None if held is None else held.id


async def test_a_live_path_is_refused_to_another_record(bulk_store: BulkAssetStore) -> None:
    assert (await bulk_store.put(record("a1"))).applied
    refused = await bulk_store.put(record("b1"))
    assert not refused.applied and refused.legacy_holder == "a1"
    assert await bulk_store.get("b1") is None  # nothing of the refused write is stored
    assert await found(bulk_store, PATH) == "a1"
    again = await bulk_store.put(record("a1", 2))  # its holder may write it again
    assert again.applied and again.legacy_holder is None


async def test_a_deleted_records_path_answers_until_another_record_takes_it(
    bulk_store: BulkAssetStore,
) -> None:
    await bulk_store.put(record("a1"))
    assert (await bulk_store.put(record("a1", 2, deleted=True))).applied
    held = await bulk_store.get_by_legacy_path(PATH)
    assert held is not None and held.id == "a1" and held.deleted  # the route answers 410
    assert (await bulk_store.put(record("b1"))).applied  # the delete freed the path
    assert await found(bulk_store, PATH) == "b1"
    # The deleted record cannot come back to life on a path another live record holds.
    back = await bulk_store.put(record("a1", 3))
    assert not back.applied and back.legacy_holder == "b1"
    # Written again while deleted, it leaves the new holder alone.
    assert (await bulk_store.put(record("a1", 4, deleted=True))).applied
    assert await found(bulk_store, PATH) == "b1"


async def test_a_moved_path_is_freed_and_the_new_one_found(bulk_store: BulkAssetStore) -> None:
    await bulk_store.put(record("a1"))
    assert (await bulk_store.put(record("a1", 2, path=OTHER))).applied
    assert await found(bulk_store, PATH) is None
    assert await found(bulk_store, OTHER) == "a1"
    assert (await bulk_store.put(record("b1"))).applied
    assert await found(bulk_store, PATH) == "b1"
    assert (await bulk_store.put(record("a1", 3, path=None))).applied  # the path removed
    assert await found(bulk_store, OTHER) is None


async def test_a_stale_write_does_not_touch_the_index(bulk_store: BulkAssetStore) -> None:
    await bulk_store.put(record("a1", 5, path=OTHER))
    stale = await bulk_store.put(record("a1", 4))
    assert not stale.applied and stale.current_version == 5
    assert await found(bulk_store, PATH) is None
    assert await found(bulk_store, OTHER) == "a1"
    assert (await bulk_store.put(record("b1"))).applied


async def test_racing_writers_for_one_path_exactly_one_wins(bulk_store: BulkAssetStore) -> None:
    for round_ in range(5):
        path = f"/government/uploads/race/{round_}/file.pdf"
        writers = [record(f"r{round_}w{n}", path=path) for n in range(8)]
        results = await asyncio.gather(*(bulk_store.put(w) for w in writers))
        winners = [w.id for w, r in zip(writers, results, strict=True) if r.applied]
        assert len(winners) == 1, results
        assert {r.legacy_holder for r in results if not r.applied} == set(winners)
        assert await found(bulk_store, path) == winners[0]


async def test_a_batch_keeps_the_index_like_single_writes(bulk_store: BulkAssetStore) -> None:
    await bulk_store.put(record("a1", 1, path=OTHER))
    batch = [
        record("a1", 2),  # moved from OTHER: the batch names the stored path again
        record("b1"),  # the path a1 just took
        record("c1", path=OTHER),  # the path a1 just freed
    ]
    results = await bulk_store.put_many(batch)
    assert [getattr(r, "applied", r) for r in results] == [True, False, True]
    assert getattr(results[1], "legacy_holder", None) == "a1"
    assert await found(bulk_store, PATH) == "a1"
    assert await found(bulk_store, OTHER) == "c1"


async def test_a_cold_lookup_is_one_round_trip_on_a_single_node(redis_url: str) -> None:
    store = open_store(redis_url)
    await store.put(record("a1"))
    watcher, marker = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    marker.ping()  # connected before MONITOR starts: its handshake is not listed
    with watcher.monitor() as monitor:
        assert await found(store, PATH) == "a1"
        marker.echo("lookup-done")
        sent = []  # what clients sent; the commands a script runs are listed as "lua"
        while (entry := monitor.next_command())["command"] != "ECHO lookup-done":
            if entry["client_type"] != "lua":
                sent.append(entry["command"].split()[0])
    watcher.close()
    marker.close()
    assert sent == ["EVALSHA"]
    await store.close()


async def test_cluster_takes_over_an_entry_a_stopped_writer_left(
    redis_cluster: RedisCluster, cluster_url: str
) -> None:
    """A writer that claimed a path and stopped before writing its record leaves an entry whose
    record does not hold the path: lookups ignore it and the next claim takes it over."""
    store = open_store(cluster_url)
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    client.set(legacy_key(PATH), "Lghost")
    assert client.hget(asset_key("ghost"), "record") is None
    assert await found(store, PATH) is None
    assert (await store.put(record("b1"))).applied
    assert client.get(legacy_key(PATH)) == b"Lb1"
    assert await found(store, PATH) == "b1"
    # An entry left by a record that moved on (its release never ran) is taken over too.
    await store.put(record("c1", path=OTHER))
    client.set(legacy_key(PATH), "Lc1")
    assert await found(store, PATH) is None
    assert (await store.put(replace(record("b1", 2)))).applied
    assert await found(store, PATH) == "b1"
    client.close()
    await store.close()
