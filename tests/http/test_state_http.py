"""How the gateway uses its state over HTTP: warm requests do no store I/O, and an unreachable
Redis means 503 for anything not already cached, never a guess; an import reaches a running gateway."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.importer import Importer
from gateway.state.cache import NOT_CACHED
from gateway.state.factory import open_store
from tests.http.conftest import DRAFT, Keys, RunningGateway
from tests.servers import RedisServer
from tests.waiting import until


async def test_warm_requests_do_no_store_reads(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="warm1", filename="f.pdf", access_limited={"users": ["u1"]})
    token = keys.user_token("u1")
    reads_before = running.backend.reads
    verifications_before = running.gateway.verifier.verifications
    for _ in range(20):
        response = await running.get("/media/warm1/f.pdf", Authorization=f"Bearer {token}")
        assert response.status == 302
    assert running.backend.reads - reads_before == 1
    assert running.gateway.verifier.verifications - verifications_before == 1


async def test_missing_ids_are_cached_too(running: RunningGateway) -> None:
    before = running.backend.reads
    for _ in range(5):
        assert (await running.get("/media/nosuch/f.pdf")).status == 404
    assert running.backend.reads - before == 1


async def test_redis_down_is_503_unless_cached_then_recovers(
    running: RunningGateway, redis_server: RedisServer
) -> None:
    await running.put(id="up1", filename="f.pdf")
    await running.put(id="up2", filename="f.pdf", access_limited={"users": ["u1"]})
    assert (await running.get("/media/up1/f.pdf")).status == 302  # now cached
    redis_server.stop()
    try:
        cached = await running.get("/media/up1/f.pdf")
        assert cached.status == 302  # served from the in-process cache within its TTL
        uncached = await running.get("/media/up2/f.pdf")
        assert uncached.status == 503
        assert uncached.headers["Retry-After"].isdigit()
        assert uncached.headers["Cache-Control"] == "private, no-store"
        assert await uncached.text() == "Service Unavailable\n"
    finally:
        redis_server.start()
    # Same gateway, same store object: it reconnects by itself.
    await running.put(id="up3", filename="f.pdf")
    assert (await running.get("/media/up3/f.pdf")).status == 302


async def test_an_import_reaches_a_running_gateway_at_once(
    running: RunningGateway, redis_url: str, tmp_path: Path
) -> None:
    """`asset import` writes in batches straight to Redis; the gateway, holding the old records in
    its cache for 30 s, must hear of each one from the batch write's own invalidations."""
    await asyncio.wait_for(running.gateway.invalidations.subscribed.wait(), 5)
    invalidations = running.gateway.invalidations
    for n in range(3):
        announced = invalidations.received
        await running.put(id=f"imp{n}", filename="f.pdf", draft=True)
        # Its invalidation arrives through Redis: heard before the read, it cannot empty the cache after.
        await until(lambda seen=announced: invalidations.received > seen, what="the put's invalidation")
        answer = await running.get(f"/media/imp{n}/f.pdf")
        assert (answer.status, answer.headers["Location"].startswith(f"http://{DRAFT}/")) == (302, True)
    assert all(isinstance(running.gateway.store.peek(f"imp{n}"), bytes) for n in range(3))  # held

    source = tmp_path / "published.ndjson"
    lines = [
        {"id": f"imp{n}", "version": 2, "object_key": f"objects/imp{n}", "filename": "f.pdf"}
        for n in range(3)
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    importer_store = open_store(redis_url)  # its own connection, as the CLI command has
    try:
        summary = await Importer(source, importer_store).run()
    finally:
        await importer_store.close()
    assert summary.written == 3

    def all_dropped() -> bool:
        return all(running.gateway.store.peek(f"imp{n}") is NOT_CACHED for n in range(3))

    await until(all_dropped, within=5.0, what="the import's invalidations reached the gateway")
    for n in range(3):
        answer = await running.get(f"/media/imp{n}/f.pdf")
        assert answer.status == 302
        assert answer.headers["Location"].startswith(running.s3.endpoint_url)  # published now
