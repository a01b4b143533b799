"""Both store backends against the same contract, Redis always a real redis-server: versioned
writes, concurrent writers, and recovery after Redis restarts. Also every kind of state URL."""

from __future__ import annotations

import asyncio
import random
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

from gateway.models import AccessList, AssetRecord
from gateway.records import MAX_VERSION
from gateway.state.base import AssetStore, StoreUnavailable, WriteResult
from gateway.state.factory import open_store
from gateway.state.memory import MemoryAssetStore
from gateway.state.redis import RedisAssetStore, asset_key
from tests.servers import RedisServer, free_port, require_binary, run_redis, wait_for_port
from tests.state.conftest import backend_url

# Seconds an operation on an unreachable Redis may take before the test fails: it must fail, not hang.
FAILS_FAST = 5

pytestmark = pytest.mark.asyncio


def record(asset_id: str = "a1", version: int = 1) -> AssetRecord:
    return AssetRecord(id=asset_id, version=version, object_key=f"k-{asset_id}", filename="f.pdf")


FULL = AssetRecord(
    id="5a1b2c",
    version=3,
    object_key="0f8e2c1a-uuid",
    filename="budget.pdf",
    filename_history=("budget-draft.pdf", "budget-v1.pdf"),
    content_type="application/pdf",
    state="clean",
    draft=True,
    deleted=True,
    redirect_url="https://example.org/new",
    replacement_id="other_1",
    access_limited=AccessList(users=("u1",), organisations=("o1", "o2"), groups=("g1",)),
    auth_bypass_ids=("bypass-1",),
    parent_document_url="https://example.org/doc",
    etag='"5a1b-1f00"',
    last_modified="2018-01-19T11:15:58Z",
    size=7936,
)


@pytest_asyncio.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AssetStore]:
    opened = open_store(backend_url(request, request.param))  # cluster: 3 nodes, tests/state/conftest.py
    if isinstance(opened, RedisAssetStore) and isinstance(opened.client, RedisCluster):
        # Discover the nodes and connect to each outside the store's per-call deadline: these tests
        # are about what is stored, not about how fast a loaded machine opens its first sockets.
        await opened.client.ping(target_nodes=RedisCluster.ALL_NODES)
    yield opened
    await opened.close()


async def test_roundtrip_preserves_every_field(store: AssetStore) -> None:
    assert await store.put(FULL) == WriteResult(applied=True, current_version=3)
    assert await store.get(FULL.id) == FULL
    minimal = record("plain")
    await store.put(minimal)
    assert await store.get("plain") == minimal


async def test_unknown_id_is_none(store: AssetStore) -> None:
    assert await store.get("nothing-here") is None


@pytest.mark.parametrize("stale_version", [3, 2, 1])
async def test_stale_write_is_rejected(store: AssetStore, stale_version: int) -> None:
    await store.put(record("a1", 3))
    stale = AssetRecord(id="a1", version=stale_version, object_key="other", filename="x.pdf")
    assert await store.put(stale) == WriteResult(applied=False, current_version=3)
    assert await store.get("a1") == record("a1", 3)


@pytest.mark.parametrize(("first", "second"), [(9, 10), (99, 100), (MAX_VERSION - 1, MAX_VERSION)])
async def test_versions_compare_as_integers(store: AssetStore, first: int, second: int) -> None:
    """Not as strings ("10" < "9") nor as floats (2^63 - 1 == 2^63 - 2 as a double)."""
    assert (await store.put(record("a1", first))).applied
    assert await store.put(record("a1", second)) == WriteResult(True, second)
    assert await store.put(record("a1", first)) == WriteResult(False, second)
    assert await store.get("a1") == record("a1", second)


async def test_concurrent_writers_keep_the_highest_version(store: AssetStore) -> None:
    versions = list(range(1, 51))
    random.Random(7).shuffle(versions)
    results = await asyncio.gather(*(store.put(record("hot", v)) for v in versions))
    for version, result in zip(versions, results, strict=True):
        if result.applied:
            assert result.current_version == version
        else:  # rejected only because something at least as new was already there
            assert result.current_version >= version
    assert await store.get("hot") == record("hot", 50)


async def test_ping(store: AssetStore) -> None:
    await store.ping()


async def test_memory_store_counts_reads() -> None:
    store = MemoryAssetStore([record("a1")])
    await store.get("a1")
    await store.get("b1")
    assert store.reads == 2
    assert len(store) == 1


async def test_redis_layout(redis_url: str) -> None:
    """One hash per asset under a Cluster hash tag, readable by ops with redis-cli."""
    store = open_store(redis_url)
    assert isinstance(store, RedisAssetStore)
    await store.put(FULL)
    raw = redis.Redis.from_url(redis_url)
    try:
        assert asset_key("5a1b2c") == "asset:{5a1b2c}"
        assert set(raw.hkeys("asset:{5a1b2c}")) == {b"version", b"record"}
        assert raw.hget("asset:{5a1b2c}", "version") == b"3"
    finally:
        raw.close()
        await store.close()
    assert store.reads == 0


async def test_redis_outage_raises_then_recovers(redis_server: RedisServer, redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisAssetStore)
    await store.put(record("a1"))
    assert await store.get("a1") == record("a1")
    try:
        redis_server.stop()
        async with asyncio.timeout(FAILS_FAST):  # fails, not hangs, so callers can answer 503
            with pytest.raises(StoreUnavailable):
                await store.get("a1")
            with pytest.raises(StoreUnavailable):
                await store.put(record("a1", 2))
            with pytest.raises(StoreUnavailable):
                await store.ping()
    finally:
        redis_server.start()
    # The same store object reconnects by itself (this Redis keeps nothing across restarts).
    await store.ping()
    assert await store.get("a1") is None
    assert await store.put(record("a1", 2)) == WriteResult(True, 2)
    assert await store.get("a1") == record("a1", 2)
    assert store.reads == 4
    await store.close()


async def test_redis_unreachable_from_the_start() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable):
        await store.get("a1")
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()


# ---- every kind of state URL, each against a real server ----


async def exercise(store: AssetStore) -> None:
    await store.ping()
    assert await store.put(record("a1", 2)) == WriteResult(True, 2)
    assert await store.put(record("a1", 1)) == WriteResult(False, 2)
    assert await store.get("a1") == record("a1", 2)
    await store.close()


async def test_memory_url() -> None:
    store = open_store("memory://")
    assert isinstance(store, MemoryAssetStore)
    await exercise(store)


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gateway-redis-") as directory:
        yield Path(directory)


def spawn(directory: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [require_binary("redis-server"), *args, "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


@pytest.fixture
def unix_socket(tmp_dir: Path) -> Iterator[Path]:
    socket_path = tmp_dir / "redis.sock"
    process = spawn(tmp_dir, "--port", "0", "--unixsocket", str(socket_path), "--save", "")
    try:
        wait_for_file(socket_path)
        yield socket_path
    finally:
        stop(process)


async def test_unix_socket_url(unix_socket: Path) -> None:
    await exercise(open_store(f"unix://{unix_socket}?db=1"))


@pytest.fixture
def sentinel(tmp_dir: Path) -> Iterator[tuple[int, RedisServer]]:
    """A real Sentinel watching its own master, named "gateway"; yields (sentinel port, master)."""
    with run_redis() as master:
        port = free_port()
        config = tmp_dir / "sentinel.conf"  # Sentinel rewrites its config, so a private copy
        config.write_text(
            f"port {port}\nbind 127.0.0.1\nsentinel monitor gateway 127.0.0.1 {master.port} 1\n"
        )
        process = spawn(tmp_dir, str(config), "--sentinel")
        try:
            wait_for_port(port)
            yield port, master
        finally:
            stop(process)


async def test_sentinel_url(sentinel: tuple[int, RedisServer]) -> None:
    port, master = sentinel
    # The first sentinel listed is down: the next one answers.
    await exercise(open_store(f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{port}/gateway/2"))
    raw = redis.Redis.from_url(f"redis://127.0.0.1:{master.port}/2")
    assert raw.exists("asset:{a1}")
    raw.close()


async def test_sentinel_without_a_reachable_sentinel() -> None:
    store = open_store(f"redis+sentinel://127.0.0.1:{free_port()}/gateway")
    async with asyncio.timeout(FAILS_FAST):
        with pytest.raises(StoreUnavailable):
            await store.get("a1")
    await store.close()


@pytest.fixture
def cluster(tmp_dir: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A one-node cluster owning every slot: enough to prove keys and the script are Cluster-safe.
    Yields (port, process)."""
    port = free_port()
    process = spawn(
        tmp_dir, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_dir / "nodes.conf"),
        "--cluster-port", str(free_port()),  # the default, port + 10000, may not exist
    )  # fmt: skip
    try:
        wait_for_port(port)
        admin = redis.Redis(port=port)
        admin.cluster("ADDSLOTSRANGE", "0", "16383")
        deadline = time.monotonic() + 10
        while admin.cluster("INFO").get("cluster_state") != "ok":
            assert time.monotonic() < deadline, "cluster never became ready"
            time.sleep(0.05)
        admin.close()
        yield port, process
    finally:
        stop(process)


async def test_cluster_url(cluster: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, process = cluster
    store = open_store(f"redis+cluster://127.0.0.1:{port}")
    assert isinstance(store, RedisAssetStore)
    assert isinstance(store.client, RedisCluster)
    await exercise(store)

    store = open_store(f"redis+cluster://127.0.0.1:{port}")
    assert await store.get("a1") == record("a1", 2)
    stop(process)
    async with asyncio.timeout(FAILS_FAST):
        with pytest.raises(StoreUnavailable):
            await store.get("a1")
    await store.close()


async def test_tls_cluster_url_uses_tls() -> None:
    store = open_store("rediss+cluster://127.0.0.1:6390")
    assert isinstance(store, RedisAssetStore)
    assert isinstance(store.client, RedisCluster)
    assert store.client.nodes_manager.connection_kwargs["connection_class"] is SSLConnection
    await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "redis+sentinel:///gateway",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/gateway/not-a-db",
        "redis+sentinel://127.0.0.1:port/gateway",
    ],
)
async def test_bad_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis|sentinel|state url"):
        open_store(url)
