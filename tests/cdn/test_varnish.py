"""A real Varnish, configured from the shipped cdn/varnish.vcl.template, in front of real gateways
on a real redis-server and moto's S3: public answers are cached at the edge, and a write through
the admin API purges them at once; through a Varnish outage and a gateway death nothing is lost;
with two gateways each purge reaches Varnish once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio
from aiohttp import ClientSession, web

from gateway.app import build_gateway, create_admin_app, create_public_app
from gateway.cdn.queue import PURGE_GROUP, PURGE_STREAM
from gateway.http.context import Gateway
from gateway.http.runner import GatewayRunner
from gateway.settings import Secret
from tests.http.conftest import LIVE, Keys, gateway_settings
from tests.http.conftest import keys as keys  # fixtures, shared
from tests.http.conftest import user_key_pair as user_key_pair
from tests.servers import S3Server, free_port
from tests.varnish import Varnish, run_varnish
from tests.waiting import until

ADMIN_TOKEN = "cdn-admin-token-0123456789abcdef"


@dataclass
class Edge:
    """Varnish in front of gateway processes' public listeners, written to through their admin APIs."""

    varnish: Varnish
    gateways: list[tuple[Gateway, str, str]]  # gateway, public URL, admin URL
    session: ClientSession
    redis: Any

    async def write(self, method: str, asset_id: str, body: dict[str, Any], via: int = 0) -> int:
        url = f"{self.gateways[via][2]}/assets/{asset_id}"
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with self.session.request(method, url, data=json.dumps(body), headers=headers) as response:
            await response.read()
            return response.status

    async def publish(self, asset_id: str) -> None:
        body = {"id": asset_id, "version": 1, "object_key": f"objects/{asset_id}", "filename": "a.pdf"}
        assert await self.write("PUT", asset_id, body) in (200, 201)

    async def unpublish(self, asset_id: str, version: int = 2, via: int = 0) -> None:
        assert await self.write("PATCH", asset_id, {"version": version, "draft": True}, via) == 200

    async def fetch(self, asset_id: str) -> tuple[int, str, str]:
        """(status, Location, X-Cache) of the public URL through Varnish."""
        async with self.session.get(
            f"{self.varnish.url}/media/{asset_id}/a.pdf", headers={"Host": LIVE}, allow_redirects=False
        ) as response:
            await response.read()
            return response.status, response.headers.get("Location", ""), response.headers["X-Cache"]

    async def cache(self, asset_id: str) -> str:
        """Fetch until Varnish serves the public redirect from its cache; return its Location."""
        status, location, _ = await self.fetch(asset_id)
        assert status == 302 and location.startswith("http://127.0.0.1")  # the presigned S3 URL
        again = await self.fetch(asset_id)
        assert again == (302, location, "hit")
        return location

    async def gone_from_edge(self, asset_id: str, cached_location: str) -> bool:
        _, location, _ = await self.fetch(asset_id)
        return location != cached_location

    async def queue_empty(self) -> bool:
        length = await self.redis.xlen(PURGE_STREAM)
        pending = (await self.redis.xpending(PURGE_STREAM, PURGE_GROUP))["pending"]
        return length == 0 and pending == 0


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def varnish(ports: tuple[int, int]) -> Iterator[Varnish]:
    with run_varnish(backend_port=ports[0]) as running:
        yield running


async def start(
    stack: AsyncExitStack,
    redis_url: str,
    s3: S3Server,
    keys: Keys,
    varnish: Varnish,
    port: int,
    claim_after: float | None = None,
) -> tuple[Gateway, str, str]:
    settings = gateway_settings(
        redis_url, s3, keys,
        admin={"token": Secret(ADMIN_TOKEN)},
        cdn={"purge": "http", "url": f"{varnish.url}/"},
    )  # fmt: skip
    gateway = build_gateway(settings)
    assert gateway.purges is not None
    if claim_after is not None:
        gateway.purges.claim_after = claim_after
    admin_port = free_port()
    for app, listen in ((create_public_app(gateway), port), (create_admin_app(gateway), admin_port)):
        runner = GatewayRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", listen).start()
        stack.push_async_callback(runner.cleanup)
    return gateway, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"


@pytest.fixture
async def edge(
    redis_url: str, s3_server: S3Server, keys: Keys, varnish: Varnish, ports: tuple[int, int]
) -> AsyncIterator[Edge]:
    async with AsyncExitStack() as stack:
        client = redis.asyncio.from_url(redis_url)
        stack.push_async_callback(client.aclose)
        session = await stack.enter_async_context(ClientSession())
        first = await start(stack, redis_url, s3_server, keys, varnish, ports[0])
        yield Edge(varnish, [first], session, client)


async def test_unpublished_file_leaves_the_edge_within_a_second(edge: Edge, record_property: Any) -> None:
    await edge.publish("e1")
    cached = await edge.cache("e1")
    started = time.monotonic()
    await edge.unpublish("e1")
    await until(
        lambda: edge.gone_from_edge("e1", cached), within=1.0, what="Varnish dropped the cached answer"
    )
    record_property("unpublish_to_edge_seconds", round(time.monotonic() - started, 4))
    status, location, _ = await edge.fetch("e1")
    assert status == 302 and location.startswith("http://draft-assets.test/")  # the live answer for a draft
    assert edge.varnish.purges_received() == ["asset-e1"]
    await until(edge.queue_empty, what="the purge was acknowledged")


async def test_a_purge_written_while_varnish_is_down_arrives_when_it_is_back(edge: Edge) -> None:
    await edge.publish("o1")
    await edge.cache("o1")
    gateway = edge.gateways[0][0]
    edge.varnish.stop()
    await edge.unpublish("o1")
    failed = ("http", "failed")
    await until(lambda: gateway.metrics.counts.purges.get(failed, 0) >= 1, what="a purge attempt failed")
    assert not await edge.queue_empty()
    edge.varnish.start()
    await until(edge.queue_empty, within=40, what="the purge was delivered once Varnish was back")
    assert edge.varnish.purges_received() == ["asset-o1"]  # this Varnish started after the write
    assert gateway.metrics.counts.purges[("http", "sent")] == 1


async def test_a_purge_left_by_a_dead_gateway_is_sent_by_another(
    edge: Edge, redis_url: str, s3_server: S3Server, keys: Keys
) -> None:
    await edge.publish("d1")
    cached = await edge.cache("d1")
    edge.varnish.stop()
    await edge.unpublish("d1")
    dead = edge.gateways[0][0]
    await until(
        lambda: dead.metrics.counts.purges.get(("http", "failed"), 0) >= 1, what="pending on the first"
    )
    assert dead.purges is not None
    dead.purges.claim_after = 3600  # it would keep its own entry; it is about to die instead
    async with AsyncExitStack() as stack:
        # The first gateway's purge worker dies without acknowledging (its consumer keeps the
        # entry pending), and a second gateway takes over.
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "cdn-purges"]
        assert len(tasks) == 1
        tasks[0].cancel()
        survivor = await start(stack, redis_url, s3_server, keys, edge.varnish, free_port(), claim_after=0.5)
        edge.varnish.start()
        await until(edge.queue_empty, within=20, what="the survivor claimed and sent the purge")
        assert survivor[0].metrics.counts.purges[("http", "sent")] == 1
    assert edge.varnish.purges_received() == ["asset-d1"]
    status, location, _ = await edge.fetch("d1")
    assert status == 302 and location != cached and location.startswith("http://draft-assets.test/")


async def test_two_gateways_send_each_purge_exactly_once(
    edge: Edge, redis_url: str, s3_server: S3Server, keys: Keys
) -> None:
    async with AsyncExitStack() as stack:
        edge.gateways.append(await start(stack, redis_url, s3_server, keys, edge.varnish, free_port()))
        ids = [f"two{i}" for i in range(20)]
        cached = {}
        for asset_id in ids:
            await edge.publish(asset_id)
            cached[asset_id] = await edge.cache(asset_id)
        for index, asset_id in enumerate(ids):
            await edge.unpublish(asset_id, via=index % 2)
        for asset_id in ids:
            await until(
                lambda a=asset_id: edge.gone_from_edge(a, cached[a]), within=5, what=f"{asset_id} purged"
            )
        await until(edge.queue_empty, what="every purge acknowledged")
        sent = [g.metrics.counts.purges.get(("http", "sent"), 0) for g, _, _ in edge.gateways]
    assert sorted(edge.varnish.purges_received()) == sorted(f"asset-{a}" for a in ids)  # each once
    assert sum(sent) == len(ids)
