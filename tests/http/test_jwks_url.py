"""Bearer user tokens verified with keys fetched from `[[tokens.keys]] jwks_url`: a key rotation at
the identity provider is picked up without a restart, and an unreachable provider leaves the last
good keys serving. The JWKS is served by a real HTTP server on a free loopback port."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
import pytest
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.settings import Settings, TokenKey
from tests.http.conftest import AUDIENCE, ISSUER, Keys, RunningGateway, gateway_settings, start_gateway
from tests.servers import S3Server, free_port


@dataclass
class JwksServer:
    """Publishes the public halves of `keys`; `down` answers 503."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    down: bool = False
    requests: int = 0
    url: str = ""

    def add(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self, kid: str, sub: str = "ada", **claims: Any) -> str:
        body = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600, **claims}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            return web.Response(status=503)
        to_jwk = jwt.algorithms.RSAAlgorithm.to_jwk
        entries = [
            {**json.loads(to_jwk(k.public_key())), "kid": kid, "alg": "RS256"} for kid, k in self.keys.items()
        ]
        return web.json_response({"keys": entries})


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    server.add("k1")
    app = web.Application()
    app.router.add_get("/jwks.json", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}/jwks.json"
    yield server
    await runner.cleanup()


@pytest.fixture
async def fetched_keys_gateway(
    redis_url: str, s3_server: S3Server, keys: Keys, jwks_server: JwksServer
) -> AsyncIterator[RunningGateway]:
    settings: Settings = gateway_settings(redis_url, s3_server, keys)
    fetched = TokenKey(use="user", alg="", jwks_url=jwks_server.url)
    settings = replace(settings, tokens=replace(settings.tokens, keys=(fetched, keys.preview)))
    runner, gateway, backend, base_url = await start_gateway(settings, s3_server)
    async with ClientSession() as session:
        yield RunningGateway(base_url, gateway, backend, s3_server, session)
    await runner.cleanup()


async def test_rotated_keys_are_fetched_on_the_first_unknown_kid(
    fetched_keys_gateway: RunningGateway, jwks_server: JwksServer
) -> None:
    running = fetched_keys_gateway
    await running.put(id="l1m1t", access_limited={"users": ["ada"]})
    path = "/media/l1m1t/file.pdf"
    assert jwks_server.requests == 1  # fetched at start
    answer = await running.get(path, Authorization=f"Bearer {jwks_server.token('k1')}")
    assert answer.status == 302 and "X-Amz-Signature" in answer.headers["Location"]

    jwks_server.keys.clear()
    jwks_server.add("k2")  # the provider rotates: k1 is gone, k2 signs
    answer = await running.get(path, Authorization=f"Bearer {jwks_server.token('k2')}")
    assert answer.status == 302 and "X-Amz-Signature" in answer.headers["Location"]
    assert jwks_server.requests == 2

    for n in range(10):  # made-up kids within 30 s: no further fetch, and no token
        forged = jwt.encode(
            {"sub": "ada"}, jwks_server.keys["k2"], algorithm="RS256", headers={"kid": f"x{n}"}
        )
        assert (await running.get(path, Authorization=f"Bearer {forged}")).status == 404
    assert jwks_server.requests == 2


async def test_the_last_good_keys_serve_while_the_provider_is_down(
    fetched_keys_gateway: RunningGateway, jwks_server: JwksServer
) -> None:
    running = fetched_keys_gateway
    await running.put(id="l1m1t", access_limited={"users": ["ada"]})
    (source,) = running.gateway.verifier.remote_key_sets
    jwks_server.down = True
    assert not await source.refresh()
    assert source.failures == 1
    answer = await running.get(
        "/media/l1m1t/file.pdf", Authorization=f"Bearer {jwks_server.token('k1', n=1)}"
    )
    assert answer.status == 302
