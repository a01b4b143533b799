"""A hung Redis (SIGSTOP: the socket accepts, nothing answers) must turn into prompt 503s, not
requests held for seconds, and the gateway must heal on its own after SIGCONT. This module's
Redis is its own, so stopping it disturbs no other test.

The clients below give up after CLIENT_TIMEOUT seconds, so these tests assert that an answer
arrives, and which; the latencies measured are printed (pytest -s) for the record, not asserted."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import ClientSession, ClientTimeout, web

from gateway.app import create_admin_app
from gateway.http.runner import GatewayRunner
from tests.http.conftest import Keys, RunningGateway, gateway_settings, start_gateway
from tests.servers import RedisServer, S3Server, free_port, run_redis
from tests.waiting import until

CLIENT_TIMEOUT = ClientTimeout(total=3)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    with run_redis() as server:
        yield server


class Paused:
    """SIGSTOP the server for the `with` block; SIGCONT whatever happens."""

    def __init__(self, server: RedisServer) -> None:
        self.pid = server.process.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
async def gateway_and_admin(
    own_redis: RedisServer, s3_server: S3Server, keys: Keys
) -> AsyncIterator[tuple[RunningGateway, str]]:
    import redis

    redis.Redis.from_url(own_redis.url).flushall()
    settings = gateway_settings(own_redis.url, s3_server, keys)
    runner, gateway, backend, base_url = await start_gateway(settings, s3_server)
    admin_runner = GatewayRunner(create_admin_app(gateway))
    await admin_runner.setup()
    port = free_port()
    await web.TCPSite(admin_runner, "127.0.0.1", port).start()
    async with ClientSession(timeout=CLIENT_TIMEOUT) as session:
        yield RunningGateway(base_url, gateway, backend, s3_server, session), f"http://127.0.0.1:{port}"
    await admin_runner.cleanup()
    await runner.cleanup()


async def test_a_hung_redis_gives_prompt_503s_and_heals(
    gateway_and_admin: tuple[RunningGateway, str], own_redis: RedisServer
) -> None:
    running, admin = gateway_and_admin
    for i in range(6):
        await running.put(id=f"hung{i}", filename="f.pdf")
    async with await running.get("/media/hung0/f.pdf") as response:
        assert response.status == 302  # now cached
    latencies: dict[str, list[float]] = {"uncached": [], "readyz": []}
    with Paused(own_redis):
        async with await running.get("/media/hung0/f.pdf") as response:
            assert response.status == 302  # the cache still serves within its TTL
        for i in range(1, 6):
            started = time.monotonic()
            async with await running.get(f"/media/hung{i}/f.pdf") as response:
                assert response.status == 503
                assert response.headers["Retry-After"].isdigit()
            latencies["uncached"].append(time.monotonic() - started)
        for _ in range(2):
            started = time.monotonic()
            async with running.session.get(f"{admin}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["checks"]["state"] == "unreachable"
            latencies["readyz"].append(time.monotonic() - started)
    print({name: [round(s, 3) for s in values] for name, values in latencies.items()})

    async def served() -> bool:
        async with await running.get("/media/hung5/f.pdf") as response:
            return response.status == 302

    await until(served, within=10, what="the gateway serving again after SIGCONT")
    async with running.session.get(f"{admin}/readyz") as response:
        assert response.status == 200


async def test_concurrent_waiters_on_a_hung_redis_all_get_503(
    gateway_and_admin: tuple[RunningGateway, str], own_redis: RedisServer
) -> None:
    """Many requests for one id share one read (single flight); all of them fail with it."""
    running, _ = gateway_and_admin
    await running.put(id="flight1", filename="f.pdf")
    running.gateway.store.clear()
    with Paused(own_redis):

        async def status() -> int:
            async with await running.get("/media/flight1/f.pdf") as response:
                return response.status

        started = time.monotonic()
        statuses = await asyncio.gather(*(status() for _ in range(20)))
        elapsed = time.monotonic() - started
    assert statuses == [503] * 20
    print({"20 waiters, seconds": round(elapsed, 3)})
