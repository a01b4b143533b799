"""One notion of "valid now" (defect 10 of the hardening review): a token the verifier accepts
thanks to `tokens.leeway` is accepted by every later step too (the policy's facts, the answer
cache), and one past the leeway by none, over real HTTP against a real redis-server."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.http.conftest import DRAFT, Keys, RunningGateway


async def test_a_user_token_inside_the_leeway_opens_what_it_admits(
    running: RunningGateway, keys: Keys
) -> None:
    assert running.gateway.settings.tokens.leeway == 30
    await running.put(id="lee1", filename="f.pdf", access_limited={"users": ["u1"]})
    lately_expired = keys.user_token("u1", ttl=-10)
    for _ in range(3):  # the first is evaluated in full, the others may come from the answer cache
        async with await running.get(
            "/media/lee1/f.pdf", Authorization=f"Bearer {lately_expired}"
        ) as response:
            assert response.status == 302
            assert urlsplit(response.headers["Location"]).netloc == urlsplit(running.s3.endpoint_url).netloc
            assert response.headers["Cache-Control"] == "private, no-store"


async def test_a_user_token_past_the_leeway_opens_nothing(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="lee2", filename="f.pdf", access_limited={"users": ["u1"]})
    long_expired = keys.user_token("u1", ttl=-40)
    async with await running.get("/media/lee2/f.pdf", Authorization=f"Bearer {long_expired}") as response:
        assert response.status == 404


async def test_a_preview_cookie_inside_the_leeway_opens_its_draft(
    running: RunningGateway, keys: Keys
) -> None:
    await running.put(id="lee3", filename="f.pdf", draft=True, auth_bypass_ids=["b1"])
    cookie = running.gateway.settings.tokens.preview_cookie
    lately_expired = keys.preview_token("b1", ttl=-10)
    async with await running.get(
        "/media/lee3/f.pdf", host=DRAFT, Cookie=f"{cookie}={lately_expired}"
    ) as response:
        assert response.status == 302
        assert urlsplit(response.headers["Location"]).netloc == urlsplit(running.s3.endpoint_url).netloc
    long_expired = keys.preview_token("b1", ttl=-40)
    async with await running.get(
        "/media/lee3/f.pdf", host=DRAFT, Cookie=f"{cookie}={long_expired}"
    ) as response:
        assert response.status == 302  # anonymous on the draft host: to the login page
        assert urlsplit(response.headers["Location"]).netloc != urlsplit(running.s3.endpoint_url).netloc
