"""What only a real multi-node Redis Cluster shows: records spread over every node, and a gateway's
invalidation subscription moving to another node when its node dies. The store contract and the
invalidation tests also run against the cluster (tests/state/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest
import redis

from gateway.background import spawn, stop
from gateway.models import AssetRecord
from gateway.state.cache import CachedAssetStore
from gateway.state.factory import open_store
from gateway.state.invalidation import InvalidationListener
from gateway.state.redis import asset_key
from tests.servers import RedisCluster, free_port, run_redis_cluster
from tests.waiting import until

pytestmark = pytest.mark.asyncio


def record(asset_id: str, version: int = 1) -> AssetRecord:
    return AssetRecord(id=asset_id, version=version, object_key=f"k-{asset_id}", filename="f.pdf")


async def test_records_spread_over_every_node(redis_cluster: RedisCluster, cluster_url: str) -> None:
    store = open_store(cluster_url)
    outcomes = await store.put_many([record(f"s{n}") for n in range(300)])
    assert all(not isinstance(o, Exception) and o.applied for o in outcomes)
    sizes = []
    for port in redis_cluster.ports:
        node = redis.Redis(port=port)
        sizes.append(node.dbsize())
        node.close()
    assert sum(sizes) == 300
    assert all(size > 30 for size in sizes), sizes  # each node owns about a third of the slots
    found = {r.id async for batch in store.scan(batch_size=50) for r in batch}
    assert found == {f"s{n}" for n in range(300)}
    await store.close()


def node_with_subscriber(cluster: RedisCluster, dead: int | None = None) -> int:
    for index, port in enumerate(cluster.ports):
        if index == dead:
            continue
        node = redis.Redis(port=port)
        subscribers = node.client_list(_type="pubsub")
        node.close()
        if subscribers:
            return index
    raise AssertionError("no node has a subscriber")


async def test_the_subscription_moves_to_another_node_when_its_node_dies() -> None:
    # A cluster of its own (this test kills a node), which keeps serving the slots still covered.
    with run_redis_cluster(3, "--cluster-require-full-coverage", "no") as cluster:
        backend = open_store(cluster.url)
        cache = CachedAssetStore(backend, ttl=300, size=100)
        listener = InvalidationListener(cache)
        task = spawn(listener.run(), name="invalidation-listener")
        # Every node listed: whichever dies, the writer can still discover the cluster.
        writer = open_store("redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in cluster.ports))
        try:
            await writer.put(record("warm", 1))
            await asyncio.wait_for(listener.subscribed.wait(), 10)
            victim = node_with_subscriber(cluster)
            cluster.processes[victim].terminate()
            cluster.processes[victim].wait(timeout=10)
            await until(lambda: listener.subscriptions >= 2, within=10.0, what="resubscribed elsewhere")
            node_with_subscriber(cluster, dead=victim)  # a surviving node has our subscriber

            # An id whose slot lives on a surviving node: written there, announced to us.
            survivor = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[(victim + 1) % 3])
            asset_id = next(
                f"m{n}" for n in range(10_000)
                if survivor.get_node_from_key(asset_key(f"m{n}")).port != cluster.ports[victim]
            )  # fmt: skip
            survivor.close()
            await writer.put(record(asset_id, 1))
            received = listener.received
            await until(lambda: listener.received > received, within=2.0)
            assert await cache.get(asset_id) == record(asset_id, 1)
            await writer.put(record(asset_id, 2))
            await until(
                lambda: listener.received > received + 1, within=2.0, what="invalidation after failover"
            )
            assert await cache.get(asset_id) == record(asset_id, 2)
        finally:
            await stop(task)
            await writer.close()
            await backend.close()


async def test_a_cluster_url_may_list_several_nodes(redis_cluster: RedisCluster, cluster_url: str) -> None:
    """The gateway starts even when the first node listed is down."""
    store = open_store(f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{redis_cluster.ports[1]}")
    await store.ping()
    assert (await store.put(record("seeded", 1))).applied
    assert await store.get("seeded") == record("seeded", 1)
    await store.close()
