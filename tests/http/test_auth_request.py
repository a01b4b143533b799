"""`GET /auth` (gateway/http/auth_request.py) and accel delivery (gateway/responses.py), asked directly
over HTTP the way nginx asks them. tests/nginx/ proves what the browser gets through a real nginx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession

from gateway.responses import ACCEL_LOCATION, http_date
from tests.http.conftest import DRAFT, LIVE, LOGIN_URL, Keys, RunningGateway, gateway_settings, start_gateway
from tests.servers import S3Server


async def auth(
    running: RunningGateway, uri: str, *, host: str = LIVE, method: str = "GET", **headers: str
) -> Any:
    return await running.session.get(
        running.base_url + "/auth",
        headers={"Host": host, "X-Original-URI": uri, "X-Original-Method": method, **headers},
        allow_redirects=False,
    )


async def test_allowed_is_204_with_the_presigned_url_and_the_file_headers(running: RunningGateway) -> None:
    record = await running.put(
        id="a1", filename="r é.pdf", etag='"e1"', last_modified="2018-01-19T11:15:58Z",
        parent_document_url="https://www.example.org/pagé>x",
    )  # fmt: skip
    response = await auth(running, "/media/a1/r%20%C3%A9.pdf", **{"X-Request-Id": "nginx-1"})
    assert response.status == 204
    headers = response.headers
    assert headers["X-Asset-Status"] == "200"
    location = headers["X-Asset-Location"]
    assert location.startswith(f"{running.s3.endpoint_url}/{running.s3.bucket}/{record.object_key}?")
    assert headers["X-Asset-Cache-Control"].startswith("public, max-age=")
    assert headers["X-Asset-ETag"] == '"e1"'
    assert headers["X-Asset-Last-Modified"] == "Fri, 19 Jan 2018 11:15:58 GMT"
    assert headers["X-Asset-Content-Type"] == "application/pdf"
    disposition = headers["X-Asset-Content-Disposition"]
    assert disposition == parse_qs(urlsplit(location).query)["response-content-disposition"][0]
    assert headers["X-Asset-Link"] == '<https://www.example.org/pag%C3%A9%3Ex>; rel="up"'
    assert headers["X-Asset-X-Frame-Options"] == "DENY"
    assert headers["X-Asset-X-Content-Type-Options"] == "nosniff"
    assert "X-Asset-X-Robots-Tag" not in headers
    assert headers["X-Request-Id"] == "nginx-1"  # nginx (127.0.0.1) is a trusted proxy here
    async with ClientSession() as plain, plain.get(location) as s3:
        assert (s3.status, await s3.read()) == (200, running.objects["a1"])


async def test_head_is_signed_for_head(running: RunningGateway) -> None:
    await running.put(id="h1", filename="f.pdf")
    response = await auth(running, "/media/h1/f.pdf", method="HEAD")
    assert response.status == 204
    async with ClientSession() as plain, plain.head(response.headers["X-Asset-Location"]) as s3:
        assert s3.status == 200


async def test_restricted_allowed_is_private(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="r1", filename="f.pdf", access_limited={"users": ["u1"]})
    token = keys.user_token("u1")
    response = await auth(running, "/media/r1/f.pdf", Authorization=f"Bearer {token}")
    assert response.status == 204
    assert response.headers["X-Asset-Cache-Control"] == "private, no-store"
    assert response.headers["X-Asset-X-Robots-Tag"] == "noindex"
    assert token not in response.headers["X-Asset-Location"]


async def test_login_needed_is_401_carrying_the_redirect(running: RunningGateway) -> None:
    await running.put(id="d1", filename="f.pdf", draft=True)
    response = await auth(running, "/media/d1/f.pdf?x=1", host=DRAFT)
    assert response.status == 401
    assert response.headers["X-Asset-Status"] == "302"
    location = response.headers["X-Asset-Location"]
    assert location.startswith(LOGIN_URL + "?return_to=")
    assert parse_qs(urlsplit(location).query)["return_to"] == [f"http://{DRAFT}/media/d1/f.pdf?x=1"]
    assert response.headers["X-Asset-Cache-Control"] == "private, no-store"


@pytest.mark.parametrize(
    ("record", "uri", "status"),
    [
        (None, "/media/none/f.pdf", "404"),
        ({"id": "g1", "filename": "f.pdf", "deleted": True}, "/media/g1/f.pdf", "410"),
        ({"id": "s1", "filename": "f.pdf", "state": "infected"}, "/media/s1/f.pdf", "404"),
        (None, "/not/an/asset", "404"),
        (None, "", "404"),  # no X-Original-URI: nginx is misconfigured; deny
    ],
)
async def test_denied_is_403_carrying_the_status(
    running: RunningGateway, record: dict[str, Any] | None, uri: str, status: str
) -> None:
    if record is not None:
        await running.put(**record)
    response = await auth(running, uri)
    assert response.status == 403
    assert response.headers["X-Asset-Status"] == status
    assert response.headers["X-Asset-Cache-Control"] == "private, no-store"
    assert "X-Asset-Location" not in response.headers


async def test_other_method_is_403_carrying_405_and_allow(running: RunningGateway) -> None:
    response = await auth(running, "/media/x1/f.pdf", method="POST")
    assert response.status == 403
    assert response.headers["X-Asset-Status"] == "405"
    assert response.headers["X-Asset-Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("records", "uri", "status", "location"),
    [
        (
            [{"id": "o1", "filename": "a.pdf", "replacement_id": "n1"}, {"id": "n1", "filename": "b.pdf"}],
            "/media/o1/a.pdf", "301", f"http://{LIVE}/media/n1/b.pdf",
        ),
        ([{"id": "d2", "filename": "a.pdf", "draft": True}], "/media/d2/a.pdf?q=1", "302",
         f"http://{DRAFT}/media/d2/a.pdf?q=1"),
        ([{"id": "f1", "filename": "new.pdf", "filename_history": ["old.pdf"]}], "/media/f1/old.pdf", "302",
         f"http://{LIVE}/media/f1/new.pdf"),
        ([{"id": "u1", "filename": "a.pdf", "redirect_url": "https://www.example.org/x"}], "/media/u1/a.pdf",
         "302", "https://www.example.org/x"),
    ],
)  # fmt: skip
async def test_redirects_are_403_carrying_status_and_location(
    running: RunningGateway, records: list[dict[str, Any]], uri: str, status: str, location: str
) -> None:
    for record in records:
        await running.put(**record)
    response = await auth(running, uri)
    assert response.status == 403
    assert response.headers["X-Asset-Status"] == status
    assert response.headers["X-Asset-Location"] == location
    direct = await running.get(uri)
    assert direct.status == int(status)
    assert direct.headers["Location"] == location
    assert response.headers["X-Asset-Cache-Control"] == direct.headers["Cache-Control"]


async def test_preview_link_carries_the_cookie(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="p1", filename="f.pdf", draft=True, auth_bypass_ids=["bp-1"])
    token = keys.preview_token("bp-1", ttl=120)
    response = await auth(running, f"/media/p1/f.pdf?token={token}", host=DRAFT)
    assert response.status == 403
    assert response.headers["X-Asset-Status"] == "302"
    assert response.headers["X-Asset-Location"] == f"http://{DRAFT}/media/p1/f.pdf"
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["X-Asset-Set-Cookie"])
    cookie = jar["auth_bypass_token"]
    assert cookie.value == token
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax"
    assert 0 < int(cookie["max-age"]) <= 120


async def test_if_none_match_is_403_carrying_304(running: RunningGateway) -> None:
    await running.put(id="e1", filename="f.pdf", etag='"abc"')
    response = await auth(running, "/media/e1/f.pdf", **{"If-None-Match": '"abc"'})
    assert response.status == 403
    assert response.headers["X-Asset-Status"] == "304"
    assert response.headers["X-Asset-ETag"] == '"abc"'


# ---- accel delivery, answered by the gateway itself


@pytest.fixture
async def accel(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings(redis_url, s3_server, keys, server={"delivery": "accel"})
    runner, gateway, backend, base_url = await start_gateway(settings, s3_server)
    async with ClientSession() as session:
        yield RunningGateway(base_url, gateway, backend, s3_server, session)
    await runner.cleanup()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_accel_serve_is_200_with_x_accel_redirect_and_headers(
    accel: RunningGateway, method: str
) -> None:
    await accel.put(id="x1", filename="f.pdf", etag='"e"', last_modified="2020-02-03T04:05:06+01:00",
                    parent_document_url="https://www.example.org/p")  # fmt: skip
    response = await accel.get("/media/x1/f.pdf", method=method)
    assert response.status == 200
    headers = response.headers
    assert headers["X-Accel-Redirect"] == ACCEL_LOCATION
    assert parse_qs(urlsplit(headers["X-Asset-Location"]).query)["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == 'inline; filename="f.pdf"'
    assert headers["ETag"] == '"e"'
    assert headers["Last-Modified"] == "Mon, 03 Feb 2020 03:05:06 GMT"
    assert headers["Link"] == '<https://www.example.org/p>; rel="up"'
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"].startswith("public, max-age=")
    async with ClientSession() as plain, plain.request(method, headers["X-Asset-Location"]) as s3:
        assert s3.status == 200  # signed for the request's own method


async def test_accel_304_and_other_answers_stay_the_gateway_s(accel: RunningGateway) -> None:
    await accel.put(id="x2", filename="f.pdf", etag='"e"')
    not_modified = await accel.get("/media/x2/f.pdf", **{"If-None-Match": '"e"'})
    assert not_modified.status == 304
    assert "X-Accel-Redirect" not in not_modified.headers
    assert (await accel.get("/media/none/f.pdf")).status == 404
    assert (await accel.get("/media/x2/f.pdf", host=DRAFT)).status == 302  # login


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2018-01-19T11:15:58Z", "Fri, 19 Jan 2018 11:15:58 GMT"),
        ("2018-01-19T11:15:58", "Fri, 19 Jan 2018 11:15:58 GMT"),
        ("Fri, 19 Jan 2018 11:15:58 GMT", "Fri, 19 Jan 2018 11:15:58 GMT"),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_http_date(value: str | None, expected: str | None) -> None:
    assert http_date(value) == expected


async def test_a_host_we_do_not_serve_is_denied_even_by_a_policy_that_allows_everything(
    running: RunningGateway,
) -> None:
    from dataclasses import replace

    from gateway.models import Action, ServeOptions
    from gateway.policy.language import AllOf, Outcome, Rule

    await running.put(id="any1", filename="f.pdf")
    allow_all = Rule("allow_all", AllOf(()), Outcome(Action.SERVE, 302, ServeOptions()), "test.yaml", 1)
    current = running.gateway.policy
    saved = current.policy
    current.policy = replace(saved, rules=(allow_all,), revision="permissive")
    try:
        response = await auth(running, "/media/any1/f.pdf", host="evil.test")
        assert response.status == 403
        assert response.headers["X-Asset-Status"] == "404"
        assert "X-Asset-Location" not in response.headers
        allowed = await auth(running, "/media/any1/f.pdf")  # the control: a served host is allowed
        assert allowed.status == 204
    finally:
        current.policy = saved
