"""Two real gateway processes (`python -m gateway serve`) on one Redis: a write through one's admin
API reaches the other at once; Redis dying and coming back needs no restart of either. This Redis
is the module's own, so killing it disturbs no other test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from aiohttp import ClientSession

from tests.http.conftest import DRAFT, LIVE, POLICIES
from tests.servers import RedisServer, S3Server, free_port, run_redis, wait_for_port
from tests.waiting import until

ADMIN_TOKEN = "two-gateways-admin-token"
ROOT = Path(__file__).resolve().parents[1]
# A deadline to wait for an invalidation, not a bound on its latency: far below the 30 s cache TTL,
# so a write seen by then was seen thanks to the invalidation.
VISIBLE_WITHIN = 10.0


@dataclass
class GatewayProcess:
    name: str
    port: int
    admin_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


def write_config(path: Path, port: int, admin_port: int, redis_url: str, s3: S3Server) -> None:
    path.write_text(
        f"""
[server]
port = {port}
[admin]
port = {admin_port}
token = "env:TEST_ADMIN_TOKEN"
[hosts]
live = ["{LIVE}"]
draft = ["{DRAFT}"]
[state]
url = "{redis_url}"
cache_ttl = 30
[s3]
bucket = "{s3.bucket}"
region = "{s3.region}"
endpoint_url = "{s3.endpoint_url}"
[policies]
dir = "{POLICIES}"
"""
    )


def wait_until_listening(gateway: GatewayProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if gateway.process.poll() is not None:
            raise AssertionError(f"gateway {gateway.name} exited: {gateway.log.read_text()[-3000:]}")
        try:
            wait_for_port(gateway.admin_port, timeout=0.1)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway {gateway.name} not listening after {timeout}s") from None


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    with run_redis() as server:
        yield server


@pytest.fixture(scope="module")
def gateways(
    own_redis: RedisServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[GatewayProcess]]:
    directory = tmp_path_factory.mktemp("two-gateways")
    env = {
        **os.environ,
        "TEST_ADMIN_TOKEN": ADMIN_TOKEN,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env = {k: v for k, v in env.items() if not k.startswith("GATEWAY_")}  # nothing from this shell
    started = []
    try:
        for name in ("a", "b"):
            port, admin_port = free_port(), free_port()
            config = directory / f"{name}.toml"
            write_config(config, port, admin_port, own_redis.url, s3_server)
            log = directory / f"{name}.log"
            with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
                process = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sink,
                )  # fmt: skip
            started.append(GatewayProcess(name, port, admin_port, process, log))
        for gateway in started:
            wait_until_listening(gateway)
        yield started
    finally:
        for gateway in started:
            gateway.process.terminate()
        for gateway in started:
            assert gateway.process.wait(timeout=10) == 0, gateway.log.read_text()[-3000:]


@pytest_asyncio.fixture
async def client() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


async def admin_put(client: ClientSession, gateway: GatewayProcess, record: dict[str, Any]) -> int:
    async with client.put(
        f"{gateway.admin}/assets/{record['id']}",
        json=record,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as response:
        return response.status


async def fetch(client: ClientSession, gateway: GatewayProcess, path: str) -> tuple[int, str]:
    async with client.get(gateway.public + path, headers={"Host": LIVE}, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", "")


async def readiness(client: ClientSession, gateway: GatewayProcess) -> tuple[int, dict[str, Any]]:
    async with client.get(f"{gateway.admin}/readyz") as response:
        return response.status, await response.json()


def record(asset_id: str, version: int, **fields: Any) -> dict[str, Any]:
    return {"id": asset_id, "version": version, "object_key": f"objects/{asset_id}",
            "filename": "file.pdf", **fields}  # fmt: skip


async def test_both_processes_are_subscribed(client: ClientSession, gateways: list[GatewayProcess]) -> None:
    for gateway in gateways:
        status, body = await readiness(client, gateway)
        assert status == 200
        assert body["checks"]["invalidation"]["status"] == "subscribed"


async def test_a_write_through_one_gateway_is_visible_on_the_other(
    client: ClientSession, gateways: list[GatewayProcess], s3_server: S3Server
) -> None:
    one, two = gateways
    assert await admin_put(client, one, record("twoA", 1, draft=True)) == 201
    status, location = await fetch(client, two, "/media/twoA/file.pdf")
    assert (status, location.split("/media")[0]) == (302, f"http://{DRAFT}")  # cached on two, for 30 s

    assert await admin_put(client, one, record("twoA", 2, draft=False)) == 200

    async def published() -> bool:
        status, location = await fetch(client, two, "/media/twoA/file.pdf")
        return status == 302 and location.startswith(s3_server.endpoint_url)

    # Well inside the 30 s cache TTL: only the invalidation can make it visible this soon.
    await until(published, within=VISIBLE_WITHIN, what="the other gateway serves the published file")


async def test_every_write_of_a_series_becomes_visible_on_the_other(
    client: ClientSession, gateways: list[GatewayProcess]
) -> None:
    """Each write renames the file, so the other gateway answers 404 for the new name until it has
    dropped its cached record; none may be missed. How long it takes is `make bench`'s business
    (bench/visibility.py), not a test's."""
    one, two = gateways
    assert await admin_put(client, one, record("ser1", 1, filename="v1.pdf")) == 201
    assert (await fetch(client, two, "/media/ser1/v1.pdf"))[0] == 302
    for version in range(2, 22):
        assert await admin_put(client, one, record("ser1", version, filename=f"v{version}.pdf")) == 200
        path = f"/media/ser1/v{version}.pdf"
        await until(
            lambda path=path: _status_is(client, two, path, 302),
            within=VISIBLE_WITHIN,
            what=f"write {version} visible on the other gateway",
        )
    assert (await fetch(client, two, "/media/ser1/v1.pdf"))[0] == 404  # the first name is gone


async def test_redis_dies_and_returns_without_restarting_either_gateway(
    client: ClientSession, gateways: list[GatewayProcess], own_redis: RedisServer, s3_server: S3Server
) -> None:
    one, two = gateways
    assert await admin_put(client, one, record("keep1", 1)) in (200, 201)
    assert await admin_put(client, one, record("limit1", 1, access_limited={"users": ["u1"]})) in (200, 201)
    assert (await fetch(client, two, "/media/keep1/file.pdf"))[0] == 302  # cached on two

    own_redis.stop()
    try:
        assert (await fetch(client, two, "/media/keep1/file.pdf"))[0] == 302  # served within its TTL
        for path in ("/media/limit1/file.pdf", "/media/unknown1/file.pdf"):
            async with client.get(two.public + path, headers={"Host": LIVE}, allow_redirects=False) as answer:
                assert answer.status == 503, path
                assert answer.headers["Retry-After"].isdigit()
                assert answer.headers["Cache-Control"] == "private, no-store"
        status, body = await readiness(client, two)
        assert (status, body["checks"]["state"]) == (503, "unreachable")
        await until(
            lambda: _invalidation_status(client, two, "reconnecting"), within=5.0, what="subscription lost"
        )
    finally:
        own_redis.start()

    for gateway in gateways:
        await until(
            lambda g=gateway: _resubscribed(client, g), within=10.0, what=f"{gateway.name} resubscribed"
        )
    # This Redis came back empty. Had two not cleared its cache on resubscribing, it would go on
    # serving keep1 from memory for up to 30 s.
    assert (await fetch(client, two, "/media/keep1/file.pdf"))[0] == 404
    assert await admin_put(client, one, record("keep1", 1)) == 201  # one's admin API healed too
    await until(
        lambda: _status_is(client, two, "/media/keep1/file.pdf", 302),
        within=VISIBLE_WITHIN,
        what="invalidation",
    )
    raw = redis.Redis.from_url(own_redis.url)
    assert raw.exists("asset:{keep1}")
    raw.close()


async def _invalidation_status(client: ClientSession, gateway: GatewayProcess, wanted: str) -> bool:
    _, body = await readiness(client, gateway)
    return bool(body["checks"]["invalidation"]["status"] == wanted)


async def _resubscribed(client: ClientSession, gateway: GatewayProcess) -> bool:
    status, body = await readiness(client, gateway)
    listener = body["checks"]["invalidation"]
    return status == 200 and listener["status"] == "subscribed" and listener["subscriptions"] >= 2


async def _status_is(client: ClientSession, gateway: GatewayProcess, path: str, wanted: int) -> bool:
    return (await fetch(client, gateway, path))[0] == wanted
