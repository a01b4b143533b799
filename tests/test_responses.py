"""Responder, pure: a served file's presigned redirect is shared within a time window, and its
Cache-Control never lets a cache keep the redirect longer than the URL it points at lives."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from gateway.models import (
    ANONYMOUS,
    AccessRequest,
    Action,
    AssetRecord,
    Decision,
    HostKind,
    ServeOptions,
)
from gateway.parsing import Origin, RawTokens
from gateway.presign import Presigner
from gateway.responses import Responder
from gateway.settings import S3Settings, Settings

RECORD = AssetRecord(id="a1", version=1, object_key="objects/a1", filename="a.pdf", etag='"e1"')
REQUEST = AccessRequest("GET", "https", "assets.test", HostKind.LIVE, "a1", "a.pdf", "/media/a1/a.pdf")
ORIGIN = Origin("https", "assets.test", None)
NOW = 1_715_000_000.0


def responder(presign_ttl: int = 300) -> Responder:
    settings = Settings(s3=S3Settings(presign_ttl=presign_ttl))
    return Responder(settings, Presigner(settings.s3, Credentials("AKID", "secret")))


def serve(
    responder: Responder, now: float, *, private: bool = False, ttl: int | None = None
) -> tuple[str, str]:
    decision = Decision(Action.SERVE, 302, "serve", "r1", private=private, serve=ServeOptions("inline", ttl))
    response = responder.respond(decision, REQUEST, ORIGIN, ANONYMOUS, RawTokens(), RECORD, now)
    assert response.status == 302
    return response.headers["Location"], response.headers["Cache-Control"]


def url_expires_at(url: str) -> float:
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    signed = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    return signed.timestamp() + int(params["X-Amz-Expires"])


@given(
    st.floats(min_value=1e9, max_value=4e9, allow_nan=False),
    st.sampled_from([None, 1, 3, 4, 60, 301, 3600, 604800]),
)
def test_a_public_redirect_is_cached_for_at_most_half_the_life_its_url_has_left(
    now: float, ttl: int | None
) -> None:
    location, cache = serve(responder(), now, ttl=ttl)
    assert cache.startswith("public, max-age=")
    max_age = int(cache.removeprefix("public, max-age="))
    left = url_expires_at(location) - now
    assert 0 <= max_age <= left / 2
    assert left > 0.75 * (ttl or 300) - 1  # never a nearly dead URL


def test_requests_in_one_window_share_the_url_and_the_next_window_gets_a_new_one() -> None:
    r = responder()
    start = NOW - NOW % 75  # 300 s URLs are shared for 75 s windows
    first, cache = serve(r, start)
    assert cache == "public, max-age=150"
    later, later_cache = serve(r, start + 70)
    assert later == first
    assert later_cache == "public, max-age=115"  # the same URL has 70 s less to live
    assert serve(r, start + 75)[0] != first


def test_restricted_answers_stay_private_whatever_the_url() -> None:
    location, cache = serve(responder(), NOW, private=True)
    assert cache == "private, no-store"
    assert location == serve(responder(), NOW)[0]  # the URL is the object's, not the visitor's


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_each_method_gets_a_url_signed_for_it(method: str) -> None:
    request = AccessRequest(method, "https", "assets.test", HostKind.LIVE, "a1", "a.pdf", "/media/a1/a.pdf")
    decision = Decision(Action.SERVE, 302, "serve", "r1", private=False, serve=ServeOptions())
    r = responder()
    response = r.respond(decision, request, ORIGIN, ANONYMOUS, RawTokens(), RECORD, NOW)
    other = "HEAD" if method == "GET" else "GET"
    request_other = AccessRequest(
        other, "https", "assets.test", HostKind.LIVE, "a1", "a.pdf", "/media/a1/a.pdf"
    )
    response_other = r.respond(decision, request_other, ORIGIN, ANONYMOUS, RawTokens(), RECORD, NOW)
    assert response.headers["Location"] != response_other.headers["Location"]


@pytest.mark.parametrize("action", [a for a in Action if a is not Action.DENY])
def test_a_host_we_do_not_serve_gets_nothing_but_404_whatever_the_policy_says(action: Action) -> None:
    request = AccessRequest("GET", "https", "evil.test", HostKind.OTHER, "a1", "a.pdf", "/media/a1/a.pdf")
    replacement = RECORD if action is Action.REDIRECT_TO_REPLACEMENT else None
    decision = Decision(action, 302, "permissive", "rev", serve=ServeOptions(), replacement=replacement)
    response = responder().respond(
        decision, request, Origin("https", "evil.test", None), ANONYMOUS, RawTokens(), RECORD, NOW
    )
    assert response.status == 404
    assert "Location" not in response.headers


@pytest.mark.parametrize("stored", ["text/html\r\nSet-Cookie: x=1", "text/plain; charset=ütf-8", '"e1"\n'])
def test_stored_values_unfit_for_a_header_are_left_out_of_the_served_headers(stored: str) -> None:
    """Defence in depth behind record validation: a stored value that could split or corrupt the
    answer's headers is never copied into one."""
    record = AssetRecord("a1", 1, "objects/a1", "a.pdf", content_type=stored, etag=stored)
    decision = Decision(Action.SERVE, 200, "serve", "r1", private=False, serve=ServeOptions())
    headers = responder().served_headers(decision, record, NOW)
    assert "Content-Type" not in headers and "ETag" not in headers
    assert all(value.isascii() and value.isprintable() for value in headers.values())
