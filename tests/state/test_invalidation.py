"""Invalidation by id across processes, against a real redis-server and a real 3-node cluster: a
write anywhere drops the id from every cache, a lost subscription clears the cache when it comes
back, and a silent server is noticed. Each "process" here has its own connections, cache and
listener, exactly as a gateway worker does; tests/test_two_gateways.py uses real processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from gateway.background import spawn, stop
from gateway.models import AssetRecord
from gateway.records import record_to_dict
from gateway.state.base import AssetStore
from gateway.state.cache import CachedAssetStore
from gateway.state.factory import open_store
from gateway.state.invalidation import InvalidationListener
from gateway.state.memory import MemoryAssetStore
from gateway.state.redis import INVALIDATION_CHANNEL, asset_key
from tests.servers import RedisCluster, RedisServer
from tests.state.conftest import backend_url
from tests.state.test_stores import sentinel, tmp_dir  # noqa: F401 - fixtures
from tests.waiting import until

pytestmark = pytest.mark.asyncio

TTL = 300  # far longer than any test: only an invalidation can refresh an entry


def record(asset_id: str, version: int = 1) -> AssetRecord:
    return AssetRecord(id=asset_id, version=version, object_key=f"k-{asset_id}-{version}", filename="f.pdf")


@dataclass
class Process:
    backend: Any
    cache: CachedAssetStore
    listener: InvalidationListener


@asynccontextmanager
async def gateway_process(backend: AssetStore, **options: float) -> AsyncIterator[Process]:
    cache = CachedAssetStore(backend, ttl=TTL, size=1000)
    listener = InvalidationListener(cache, **options)
    task = spawn(listener.run(), name="invalidation-listener")
    try:
        await asyncio.wait_for(listener.subscribed.wait(), 10)
        yield Process(backend, cache, listener)
    finally:
        await stop(task)
        await backend.close()
    assert listener.status == "stopped"


@pytest.fixture(params=["redis", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    return backend_url(request, request.param)


def write_without_publishing(url: str, changed: AssetRecord) -> None:
    """What no gateway does: change a record in Redis without announcing it."""
    if url.startswith("redis+cluster://"):
        client: Any = redis.RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
    else:
        client = redis.Redis.from_url(url)
    payload = json.dumps(record_to_dict(changed))
    client.hset(asset_key(changed.id), mapping={"version": str(changed.version), "record": payload})
    client.close()


def kill_subscriptions(url: str, request: pytest.FixtureRequest) -> None:
    if url.startswith("redis+cluster://"):
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        nodes = [redis.Redis(port=port) for port in cluster.ports]
    else:
        nodes = [redis.Redis.from_url(url)]
    for node in nodes:
        node.client_kill_filter(_type="pubsub")
        node.close()


async def test_a_write_anywhere_drops_the_id_from_every_cache(url: str) -> None:
    async with gateway_process(open_store(url)) as one, gateway_process(open_store(url)) as two:
        assert (await one.backend.put(record("a1", 1))).applied
        await one.backend.put(record("b1", 1))
        await until(lambda: two.listener.received == 2, within=1.0)  # before caching, not after
        assert await two.cache.get("a1") == record("a1", 1)
        assert await two.cache.get("b1") == record("b1", 1)
        reads = two.backend.reads

        assert (await one.backend.put(record("a1", 2))).applied
        assert await until(lambda: _is(two.cache.get("a1"), record("a1", 2)), within=1.0)
        assert two.listener.received >= 1
        assert await two.cache.get("b1") == record("b1", 1)
        assert two.backend.reads == reads + 1  # only a1 was read again: b1 stayed cached


async def _is(got: Any, expected: AssetRecord) -> bool:
    return bool(await got == expected)


async def test_the_in_process_store_invalidates_directly() -> None:
    backend = MemoryAssetStore([record("a1", 1)])
    async with gateway_process(backend) as process:
        assert process.listener.status == "in-process"
        assert await process.cache.get("a1") == record("a1", 1)
        await backend.put(record("a1", 2))  # not through the cache
        assert await process.cache.get("a1") == record("a1", 2)
        await backend.put(record("a1", 2))  # a refused write announces nothing
        assert len(backend._listeners) == 1
    assert backend._listeners == []


async def test_a_lost_subscription_clears_the_cache_when_it_returns(
    url: str, request: pytest.FixtureRequest
) -> None:
    async with gateway_process(open_store(url)) as process:
        await process.backend.put(record("a1", 1))
        await until(lambda: process.listener.received == 1, within=1.0)
        assert await process.cache.get("a1") == record("a1", 1)
        changed = record("a1", 2)
        write_without_publishing(url, changed)
        assert await process.cache.get("a1") == record("a1", 1)  # nothing told it
        kill_subscriptions(url, request)
        await until(lambda: process.listener.subscriptions >= 2, within=5.0, what="resubscribed")
        assert await process.cache.get("a1") == changed


async def test_redis_restart_resubscribes_and_invalidations_flow_again(
    redis_server: RedisServer, redis_url: str
) -> None:
    async with (
        gateway_process(open_store(redis_server.url)) as process,
        gateway_process(open_store(redis_server.url)) as writer,
    ):
        await writer.backend.put(record("a1", 1))
        await until(lambda: process.listener.received == 1, within=1.0)
        assert await process.cache.get("a1") == record("a1", 1)
        redis_server.stop()
        try:
            await until(lambda: process.listener.status == "reconnecting", within=5.0)
            assert not process.listener.subscribed.is_set()
            assert await process.cache.get("a1") == record("a1", 1)  # within its TTL: still served
        finally:
            redis_server.start()
        await asyncio.wait_for(process.listener.subscribed.wait(), 10)
        assert process.listener.subscriptions == 2
        # The cache was cleared on resubscribing: this Redis came back empty, and so does a1.
        assert await process.cache.get("a1") is None
        await asyncio.wait_for(writer.listener.subscribed.wait(), 10)
        await writer.backend.put(record("a1", 5))
        assert await until(lambda: _is(process.cache.get("a1"), record("a1", 5)), within=1.0)


async def test_a_silent_server_is_noticed_and_left(redis_url: str) -> None:
    async with gateway_process(open_store(redis_url), ping_interval=0.1) as process:
        admin = redis.Redis.from_url(redis_url)
        # Every client's commands wait for a second, as if the network dropped packets: the
        # listener's PING goes unanswered, and it must give up on that connection.
        admin.execute_command("CLIENT", "PAUSE", "1000", "ALL")
        admin.close()
        await until(lambda: process.listener.status == "reconnecting", within=3.0)
        await asyncio.wait_for(process.listener.subscribed.wait(), 10)
        assert process.listener.subscriptions >= 2


async def test_only_well_formed_ids_are_acted_on(redis_url: str) -> None:
    async with gateway_process(open_store(redis_url)) as process:
        await process.backend.put(record("a1", 1))
        await until(lambda: process.listener.received == 1, within=1.0)
        publisher = redis.Redis.from_url(redis_url)
        publisher.publish(INVALIDATION_CHANNEL, "not an id!")
        publisher.publish(INVALIDATION_CHANNEL, b"\xff\xfe")
        publisher.publish(INVALIDATION_CHANNEL, "a1")
        publisher.close()
        await until(lambda: process.listener.received == 2, within=1.0)  # the last one only


async def test_through_sentinel(sentinel: tuple[int, RedisServer]) -> None:  # noqa: F811 - the fixture
    """The subscription follows the master Sentinel names, like the store's connections."""
    port, _master = sentinel
    url = f"redis+sentinel://127.0.0.1:{port}/gateway/0"
    async with gateway_process(open_store(url)) as one, gateway_process(open_store(url)) as two:
        await one.backend.put(record("s1", 1))
        await until(lambda: two.listener.received == 1, within=1.0)
        assert await two.cache.get("s1") == record("s1", 1)
        await one.backend.put(record("s1", 2))
        assert await until(lambda: _is(two.cache.get("s1"), record("s1", 2)), within=1.0)
