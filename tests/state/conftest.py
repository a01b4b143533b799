"""A real 3-node Redis Cluster for the store and invalidation tests, and a store fixture that runs
one test against every backend: in-process, a single redis-server, and the cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from gateway.state.base import BulkAssetStore
from gateway.state.factory import open_store
from tests.servers import RedisCluster, run_redis_cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    with run_redis_cluster(nodes=3) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """The cluster, emptied for each test."""
    redis_cluster.flush()
    return redis_cluster.url


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url" if backend == "redis" else "cluster_url"))


@pytest_asyncio.fixture(params=["memory", "redis", "cluster"])
async def bulk_store(request: pytest.FixtureRequest) -> AsyncIterator[BulkAssetStore]:
    opened = open_store(backend_url(request, request.param))
    yield opened
    await opened.close()
