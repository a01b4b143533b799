"""DESIGN 2.9 tags: every publicly cacheable answer names the surrogate keys a purge will use;
private answers and errors name none. Through a real gateway, Redis and moto's S3."""

from __future__ import annotations

from aiohttp import ClientSession

from tests.http.conftest import DRAFT, Keys, RunningGateway, gateway_settings, start_gateway
from tests.servers import S3Server

KEY = "Surrogate-Key"


async def test_public_redirect_is_tagged_on_full_evaluation_and_from_the_answer_cache(
    running: RunningGateway,
) -> None:
    await running.put(id="t1", filename="a.pdf")
    for _ in range(2):  # the second answer comes from the finished-answer cache
        response = await running.get("/media/t1/a.pdf")
        assert response.status == 302
        assert response.headers["Cache-Control"].startswith("public")
        assert response.headers[KEY] == "asset-t1"
    assert running.gateway.answers is not None and len(running.gateway.answers) == 1


async def test_replacement_redirect_names_both_ends_of_the_chain(running: RunningGateway) -> None:
    await running.put(id="r1", filename="v1.pdf", replacement_id="r2")
    await running.put(id="r2", filename="v2.pdf", replacement_id="r3")
    await running.put(id="r3", filename="v3.pdf")
    response = await running.get("/media/r1/v1.pdf")
    assert response.status == 301
    assert response.headers[KEY] == "asset-r1 asset-r3"


async def test_private_answers_and_errors_carry_no_key(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="d1", filename="a.pdf", draft=True)
    await running.put(id="l1", filename="a.pdf", access_limited={"users": ["editor-1"]})
    await running.put(id="x1", filename="a.pdf", deleted=True)
    token = keys.user_token("editor-1")
    answers = [
        await running.get("/media/d1/a.pdf"),  # to the draft host
        await running.get("/media/d1/a.pdf", host=DRAFT, Authorization=f"Bearer {token}"),
        await running.get("/media/l1/a.pdf", Authorization=f"Bearer {token}"),  # private 302
        await running.get("/media/l1/a.pdf"),  # 404
        await running.get("/media/x1/a.pdf"),  # 410
        await running.get("/media/none/a.pdf"),  # 404
    ]
    assert [r.status for r in answers] == [302, 302, 302, 404, 410, 404]
    for response in answers:
        assert not response.headers["Cache-Control"].startswith("public")
        assert KEY not in response.headers


async def test_the_header_name_is_configurable(s3_server: S3Server, redis_url: str, keys: Keys) -> None:
    settings = gateway_settings(redis_url, s3_server, keys, cdn={"key_header": "Cache-Tag"})
    runner, gateway, backend, base_url = await start_gateway(settings, s3_server)
    try:
        async with ClientSession() as session:
            running = RunningGateway(base_url, gateway, backend, s3_server, session)
            await running.put(id="c1", filename="a.pdf")
            response = await running.get("/media/c1/a.pdf")
            assert response.headers["Cache-Tag"] == "asset-c1"
            assert KEY not in response.headers
            # nginx's /auth carries it as X-Asset-<name>, for a served file (204) and a public 301
            await running.put(id="c2", filename="b.pdf", replacement_id="c1")
            served = await running.get("/auth", **{"X-Original-URI": "/media/c1/a.pdf"})
            moved = await running.get("/auth", **{"X-Original-URI": "/media/c2/b.pdf"})
            assert (served.status, served.headers["X-Asset-Cache-Tag"]) == (204, "asset-c1")
            assert moved.headers["X-Asset-Status"] == "301"
            assert moved.headers["X-Asset-Cache-Tag"] == "asset-c2 asset-c1"
            for answer in (served, moved):
                assert "X-Asset-" + KEY not in answer.headers
    finally:
        await runner.cleanup()


async def test_auth_carries_no_key_for_private_answers_and_errors(
    running: RunningGateway, keys: Keys
) -> None:
    """What nginx copies from /auth follows the same rule as the direct answer."""
    await running.put(id="p1", filename="a.pdf", access_limited={"users": ["editor-1"]})
    await running.put(id="g1", filename="a.pdf", deleted=True)
    token = keys.user_token("editor-1")
    signed_in = {"Authorization": f"Bearer {token}"}
    answers = [
        await running.get("/auth", **{"X-Original-URI": "/media/p1/a.pdf", **signed_in}),  # private 204
        await running.get("/auth", **{"X-Original-URI": "/media/p1/a.pdf"}),  # 404
        await running.get("/auth", **{"X-Original-URI": "/media/g1/a.pdf"}),  # 410
    ]
    statuses = [(r.status, r.headers["X-Asset-Status"]) for r in answers]
    assert statuses == [(204, "200"), (403, "404"), (403, "410")]
    for response in answers:
        assert "X-Asset-" + KEY not in response.headers and KEY not in response.headers
