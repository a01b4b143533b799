"""Hostile tokens over HTTP: each is "no token", so a restricted file stays 404 (or login on the
draft host) and the token never shows up in a Location or the log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import ClientSession

from gateway.observability import ACCESS_LOGGER
from gateway.tokens import mint_token
from tests.http.conftest import (
    AUDIENCE,
    DRAFT,
    ISSUER,
    LOGIN_URL,
    Keys,
    RunningGateway,
    gateway_settings,
    start_gateway,
)
from tests.servers import S3Server


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _hs256_with(secret: bytes, claims: dict[str, object], kid: str | None = None) -> str:
    header: dict[str, object] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(**extra: object) -> dict[str, object]:
    valid = {
        "sub": "u1",
        "groups": ["finance"],
        "exp": int(time.time()) + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return {**valid, **extra}


HOSTILE: dict[str, Callable[[Keys], str]] = {
    "alg_none": lambda k: _unsigned({"alg": "none", "typ": "JWT"}, _claims()),
    "hs256_signed_with_rsa_public_key": lambda k: _hs256_with(k.user_public_pem.encode(), _claims(), "idp-1"),
    "unknown_kid": lambda k: mint_token(
        type(k.user)(use="user", alg="RS256", kid="idp-unknown", public_key=k.user.public_key),
        _claims(),
        k.user_private_pem,
    ),
    "expired": lambda k: k.user_token("u1", ttl=-3600, groups=["finance"]),
    "not_yet_valid": lambda k: k.user_token("u1", groups=["finance"], nbf=int(time.time()) + 3600),
    "wrong_issuer": lambda k: k.user_token("u1", groups=["finance"], iss="https://evil.test"),
    "wrong_audience": lambda k: k.user_token("u1", groups=["finance"], aud="someone-else"),
    "preview_key_as_user_token": lambda k: mint_token(k.preview, _claims()),
    "malformed": lambda k: "not.a.jwt",
    "garbage_base64": lambda k: "eyJ!!!.eyJ###.sig",
    "oversized": lambda k: k.user_token("u1", groups=["finance"], padding="x" * 8200),
}


# What the access line, `explain` and the metric name each refusal as.
REASONS = {
    "alg_none": "alg_not_allowed",
    "hs256_signed_with_rsa_public_key": "alg_not_allowed",
    "unknown_kid": "unknown_kid",
    "expired": "expired",
    "not_yet_valid": "not_yet_valid",
    "wrong_issuer": "wrong_issuer",
    "wrong_audience": "wrong_audience",
    "preview_key_as_user_token": "unknown_kid",  # no kid, and every user key has one
    "malformed": "malformed",
    "garbage_base64": "malformed",
    "oversized": "too_large",
}


@pytest.fixture
async def limited(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[RunningGateway]:
    """A gateway whose listener takes headers past 8 KB, so oversized tokens reach the verifier
    (at the default `server.max_header_size` they get a bare 400 first: tested below)."""
    settings = gateway_settings(redis_url, s3_server, keys, server={"max_header_size": 32768})
    runner, gateway, backend, base_url = await start_gateway(settings, s3_server)
    async with ClientSession() as session:
        running = RunningGateway(base_url, gateway, backend, s3_server, session)
        await running.put(id="sec1", filename="pay.csv", access_limited={"groups": ["finance"]})
        await running.put(id="sec2", filename="plan.pdf", draft=True, auth_bypass_ids=["u1"])
        yield running
    await runner.cleanup()


async def test_a_token_past_the_header_limit_gets_a_bare_400(running: RunningGateway, keys: Keys) -> None:
    token = HOSTILE["oversized"](keys)
    for headers in ({"Authorization": f"Bearer {token}"}, {"Cookie": f"gateway_session={token}"}):
        response = await running.get("/media/sec1/pay.csv", **headers)
        assert response.status == 400
        assert response.headers["Server"] == "asset-gateway"
        assert response.headers["Cache-Control"] == "private, no-store"
        assert response.headers["X-Request-Id"]
        assert await response.text() == "Bad Request\n"
    query = await running.get(f"/media/sec2/plan.pdf?token={token}", host=DRAFT)
    assert query.status == 400 and "Location" not in query.headers


async def test_a_good_token_opens_the_file(limited: RunningGateway, keys: Keys) -> None:
    """The control: without it, the rejections below would prove nothing."""
    token = keys.user_token("u1", groups=["finance"])
    response = await limited.get("/media/sec1/pay.csv", Authorization=f"Bearer {token}")
    assert response.status == 302


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_user_token_is_no_token(
    limited: RunningGateway, keys: Keys, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = HOSTILE[name](keys)
    caplog.set_level(logging.DEBUG)
    live = await limited.get("/media/sec1/pay.csv", Authorization=f"Bearer {token}")
    assert live.status == 404
    cookie = await limited.get("/media/sec1/pay.csv", Cookie=f"gateway_session={token}")
    assert cookie.status == 404
    draft = await limited.get("/media/sec2/plan.pdf", host=DRAFT, Authorization=f"Bearer {token}")
    assert draft.status == 302
    assert draft.headers["Location"].startswith(LOGIN_URL)  # anonymous, so sent to sign in
    for response in (live, cookie, draft):
        assert token not in response.headers.get("Location", "")
        assert token not in await response.text()
    assert all(token not in record.getMessage() for record in caplog.records)
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert [line["token_rejected"] for line in access] == [[f"user:{REASONS[name]}"]] * 3
    rejections = limited.gateway.metrics.counts.token_rejections
    assert rejections == {("user", REASONS[name]): 3}


@pytest.mark.parametrize("name", ["alg_none", "expired", "malformed", "oversized"])
async def test_hostile_preview_token_is_no_token(limited: RunningGateway, keys: Keys, name: str) -> None:
    token = HOSTILE[name](keys)
    query = await limited.get(f"/media/sec2/plan.pdf?token={token}", host=DRAFT)
    assert query.status == 302
    assert query.headers["Location"].startswith(LOGIN_URL)  # not a preview cookie redirect
    assert "Set-Cookie" not in query.headers
    assert token not in query.headers["Location"]
    cookie = await limited.get("/media/sec2/plan.pdf", host=DRAFT, Cookie=f"auth_bypass_token={token}")
    assert cookie.headers["Location"].startswith(LOGIN_URL)


async def test_user_signed_token_is_not_a_preview_token(limited: RunningGateway, keys: Keys) -> None:
    token = keys.user_token("u1")  # u1 is in sec2's auth_bypass_ids, but this is a user token
    response = await limited.get("/media/sec2/plan.pdf", host=DRAFT, Cookie=f"auth_bypass_token={token}")
    assert response.headers["Location"].startswith(LOGIN_URL)
