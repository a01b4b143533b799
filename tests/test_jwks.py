"""Fetched key sets: parsing, one fetch for many callers, the unknown-kid limit, and the last good
keys kept through failures. The fetch is injected (a transport), so counts are exact; fetching from
a real HTTP server is covered by the IdP tests (tests/oidc)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.jwks import KeySetError, RemoteKeySet, fetch_with_aiohttp, parse_key_set
from tests.servers import free_port


def jwk(kid: str, **extra: Any) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key)), "kid": kid, **extra}


def document(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def test_keys_are_pinned_by_the_jwk_never_by_a_token() -> None:
    ec_key = json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key())
    )
    hmac = {"kty": "oct", "k": "c2VjcmV0", "kid": "hs", "alg": "HS256"}
    broken = {"kty": "RSA", "kid": "broken", "n": "x", "e": "AQAB"}
    keys = parse_key_set(
        document(jwk("a"), jwk("b", alg="PS256"), {**ec_key, "kid": "c"}, jwk("enc", use="enc"), hmac, broken)
    )
    assert {kid: key.alg for kid, key in keys.items()} == {"a": "RS256", "b": "PS256", "c": "ES384"}


def test_a_configured_alg_pins_every_key_and_drops_those_that_say_otherwise() -> None:
    keys = parse_key_set(document(jwk("a"), jwk("b", alg="RS512")), pinned_alg="RS256")
    assert {kid: key.alg for kid, key in keys.items()} == {"a": "RS256"}


@pytest.mark.parametrize(
    "text", [b"", b"[]", b'{"keys": {}}', document({"kty": "oct", "k": "eA", "kid": "x"})]
)
def test_unusable_documents_are_errors(text: bytes) -> None:
    with pytest.raises(KeySetError):
        parse_key_set(text)


class Transport:
    """Answers fetches from a list of documents (or exceptions), counting them; can hold them."""

    def __init__(self, *answers: bytes | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, url: str) -> bytes:
        self.calls += 1
        await self.gate.wait()
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_refreshes_share_one_fetch() -> None:
    transport = Transport(document(jwk("a")))
    transport.gate.clear()
    keys = RemoteKeySet("https://idp.test/jwks", fetch=transport)
    waiting = [asyncio.create_task(keys.refresh()) for _ in range(20)]
    await asyncio.sleep(0)
    transport.gate.set()
    assert await asyncio.gather(*waiting) == [True] * 20
    assert transport.calls == 1 and keys.knows("a")


async def test_an_unknown_kid_fetches_at_most_once_per_interval() -> None:
    clock = Clock()
    a, b = jwk("a"), jwk("b")
    transport = Transport(document(a), document(a), document(a, b))  # b is published late
    keys = RemoteKeySet("https://idp.test/jwks", fetch=transport, clock=clock)
    await keys.refresh()
    assert (
        await asyncio.gather(*(keys.refresh_for_unknown(f"made-up-{n}") for n in range(50))) == [False] * 50
    )
    assert transport.calls == 2  # the start, then one for the whole flood
    clock.now += 29
    assert not await keys.refresh_for_unknown("b")
    assert transport.calls == 2  # the negative cache answers
    clock.now += 1
    assert await keys.refresh_for_unknown("b")
    assert transport.calls == 3


async def test_the_last_good_keys_keep_serving_when_a_fetch_fails(caplog: pytest.LogCaptureFixture) -> None:
    transport = Transport(document(jwk("a")), TimeoutError(), KeySetError("HTTP 500"), b"<html>")
    keys = RemoteKeySet("https://idp.test/jwks", fetch=transport)
    assert await keys.refresh()
    for _ in range(3):
        assert not await keys.refresh()
    assert keys.knows("a") and keys.failures == 3 and keys.fetches == 4
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.jwks"]
    assert len(messages) == 3 and all("keeping the 1 keys we have" in m for m in messages)
    assert "<html>" not in " ".join(messages)


async def test_a_kid_less_token_matches_only_a_lone_key() -> None:
    keys = RemoteKeySet("https://idp.test/jwks", fetch=Transport(document(jwk("a"))))
    await keys.refresh()
    assert keys.get(None) is keys.get("a")
    keys = RemoteKeySet("https://idp.test/jwks", fetch=Transport(document(jwk("a"), jwk("b"))))
    await keys.refresh()
    assert keys.get(None) is None


async def test_fetching_over_http_has_a_size_limit_and_needs_a_200() -> None:
    bodies = {"ok": (200, document(jwk("a"))), "big": (200, b"x" * (600 * 1024)), "gone": (404, b"")}

    async def serve(request: web.Request) -> web.Response:
        status, body = bodies[request.match_info["name"]]
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert b'"a"' in await fetch_with_aiohttp(f"http://127.0.0.1:{port}/ok")
        for path in ("big", "gone"):
            with pytest.raises(KeySetError):
                await fetch_with_aiohttp(f"http://127.0.0.1:{port}/{path}")
    finally:
        await runner.cleanup()
