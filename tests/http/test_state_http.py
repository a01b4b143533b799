"""How the gateway uses its state over HTTP: warm requests do no store I/O, and an unreachable
Redis means 503 for anything not already cached, never a guess."""

from __future__ import annotations

from tests.http.conftest import Keys, RunningGateway
from tests.servers import RedisServer


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
