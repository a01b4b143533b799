"""RedisAssetStore reads asked for in one event-loop turn travel together (one script call on a
single node, a pipeline on Cluster): each reader still gets exactly its own answer or error, and
one reader giving up cancels nobody else's read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis

from gateway.models import AssetRecord
from gateway.state.base import RecordUnreadable, StoreUnavailable
from gateway.state.factory import open_store
from gateway.state.redis import RedisAssetStore, asset_key
from tests.servers import RedisServer, free_port
from tests.state.conftest import backend_url

pytestmark = pytest.mark.asyncio


def record(asset_id: str, version: int = 1) -> AssetRecord:
    return AssetRecord(id=asset_id, version=version, object_key=f"k-{asset_id}", filename="f.pdf")


@pytest_asyncio.fixture(params=["redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RedisAssetStore]:
    opened = open_store(backend_url(request, request.param))
    assert isinstance(opened, RedisAssetStore)
    yield opened
    await opened.close()


async def test_concurrent_reads_each_get_their_own_record(store: RedisAssetStore) -> None:
    stored = [record(f"r{n}", version=n + 1) for n in range(40)]
    for rec in stored:
        await store.put(rec)
    wanted = [f"r{n % 40}" for n in range(0, 120, 3)] + ["missing-1", "r7", "missing-1", "r7"]
    found = await asyncio.gather(*(store.get(asset_id) for asset_id in wanted))
    expected = {rec.id: rec for rec in stored}
    assert found == [expected.get(asset_id) for asset_id in wanted]
    assert store.reads == len(wanted)


async def test_one_turns_reads_share_one_connection(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisAssetStore)
    for n in range(50):
        await store.put(record(f"c{n}"))
    observer = redis.Redis.from_url(redis_url)
    try:
        before = observer.info("clients")["connected_clients"]
        found = await asyncio.gather(*(store.get(f"c{n}") for n in range(50)))
        assert all(found)
        # Sent one by one, 50 concurrent reads would have opened up to 50 connections.
        assert observer.info("clients")["connected_clients"] - before <= 1
    finally:
        observer.close()
        await store.close()


async def test_a_turns_reads_are_one_command_on_a_single_node(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisAssetStore)
    for name in ("m1", "m2", "m3"):
        await store.put(record(name))
    watcher, marker = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    marker.ping()  # connected before MONITOR starts: its handshake is not listed
    try:
        with watcher.monitor() as monitor:
            found = await asyncio.gather(*(store.get(name) for name in ("m1", "m2", "missing", "m3")))
            marker.echo("reads-done")
            sent = []  # what clients sent; the commands a script runs are listed as "lua"
            while (entry := monitor.next_command())["command"] != "ECHO reads-done":
                if entry["client_type"] != "lua":
                    sent.append(entry["command"].split()[0])
    finally:
        watcher.close()
        marker.close()
        await store.close()
    assert found == [record("m1"), record("m2"), None, record("m3")]
    assert sent == ["EVALSHA"]


async def test_a_key_that_is_not_a_hash_fails_only_its_own_reader(store: RedisAssetStore) -> None:
    for name in ("h1", "h2"):
        await store.put(record(name))
    await store.client.set(asset_key("bad"), "garbage")
    results = await asyncio.gather(
        *(store.get(name) for name in ("h1", "bad", "h2", "missing", "bad")), return_exceptions=True
    )
    assert results[0] == record("h1") and results[2] == record("h2") and results[3] is None
    assert all(isinstance(results[n], RecordUnreadable) for n in (1, 4)), results


async def test_a_reader_giving_up_cancels_no_one_else(store: RedisAssetStore) -> None:
    for name in ("a", "b", "c"):
        await store.put(record(name))
    readers = [asyncio.ensure_future(store.get(name)) for name in ("a", "b", "a", "c")]
    readers[0].cancel()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [record("b"), record("a"), record("c")]


async def test_every_reader_of_a_failed_batch_gets_its_own_store_unavailable(
    redis_server: RedisServer, redis_url: str
) -> None:
    store = open_store(redis_url)
    try:
        redis_server.stop()
        results = await asyncio.gather(*(store.get(f"x{n}") for n in range(5)), return_exceptions=True)
        assert all(isinstance(error, StoreUnavailable) for error in results)
        assert len({id(error) for error in results}) == 5  # no traceback shared between requests
    finally:
        redis_server.start()
    await store.put(record("x1"))
    assert await store.get("x1") == record("x1")  # and the store heals by itself
    # The restarted server has forgotten the read script: a batch loads it again.
    assert await asyncio.gather(store.get("x1"), store.get("x2")) == [record("x1"), None]
    await store.close()


async def test_a_single_read_is_sent_alone_and_fails_like_one() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    with pytest.raises(StoreUnavailable, match="redis get failed"):
        await store.get("a1")
    await store.close()


async def test_an_error_redis_gives_the_whole_batch_is_not_blamed_on_any_key(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A database the server does not have: SELECT fails as the pipeline connects, a ResponseError
    # that belongs to no key. RecordUnreadable would tell ops to repair records that are fine.
    store = open_store(redis_server.url.rsplit("/", 1)[0] + "/99")
    try:
        results = await asyncio.gather(*(store.get(f"b{n}") for n in range(3)), return_exceptions=True)
        results.append(*await asyncio.gather(store.get("alone"), return_exceptions=True))  # no pipeline
    finally:
        await store.close()
    assert all(isinstance(error, redis.ResponseError) for error in results), results
    assert not any(isinstance(error, RecordUnreadable) for error in results)
    assert "is not a record" not in caplog.text
