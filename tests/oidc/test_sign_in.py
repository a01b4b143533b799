"""Sign-in, sessions and sign-out against a real OpenID provider (DESIGN 2.7)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import jwt
import pytest

from gateway.oidc.flow import SignInError, verify_id_token
from gateway.sessions import session_kid
from gateway.settings import Secret
from tests.idp_server import CLIENT_ID
from tests.oidc.conftest import (
    DRAFT,
    LIVE,
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    SESSION_SECRET,
    Browser,
    GatewayFactory,
    SignInWorld,
    is_s3,
    limited_to,
    query_of,
)
from tests.waiting import until

FINANCE_DRAFT = {"draft": True, **limited_to(groups=["finance"])}


async def read_file(browser: Browser, response_to_s3: object) -> bytes:
    location = response_to_s3.headers["Location"]  # type: ignore[attr-defined]
    assert is_s3(location)
    async with browser.session.get(location) as answer:
        assert answer.status == 200
        return await answer.read()


async def test_sign_in_opens_an_access_limited_draft(start_sign_in_gateway: GatewayFactory, browser_factory) -> None:
    gateway = await start_sign_in_gateway()
    path = await gateway.put("f1n4nc", "budget.pdf", **FINANCE_DRAFT)
    browser: Browser = await browser_factory()

    anonymous = await browser.get(gateway.url(path + "?v=1"))
    assert anonymous.status == 302
    start = anonymous.headers["Location"]
    assert start == gateway.url("/oauth2/start?" + urlencode({"return_to": path + "?v=1"}))

    landed = await browser.open_signed_in(gateway.url(path + "?v=1"), "ada")
    assert landed.status == 302 and is_s3(landed.headers["Location"])
    assert landed.headers["Cache-Control"] == "private, no-store"
    assert await read_file(browser, landed) == gateway.objects["f1n4nc"]
    # The session cookie is the gateway's own token: HttpOnly, Lax, for the whole host.
    session = browser.cookie("gateway_session", DRAFT)
    assert session is not None
    header = jwt.get_unverified_header(session)
    assert header["kid"] == session_kid(Secret(SESSION_SECRET))
    claims = jwt.decode(session, options={"verify_signature": False})
    assert claims["sub"] == "ada" and claims["groups"] == ["finance"] and claims["org"] == "hmt"
    assert claims["iss"] == "asset-gateway" and claims["sid"]
    assert 0 < claims["exp"] - time.time() <= 28800
