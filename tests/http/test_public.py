"""Every row of DESIGN 2.6 over real HTTP: gateway → real Redis for state → moto's S3 server for bytes."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse, ClientSession

from tests.http.conftest import DRAFT, LIVE, LOGIN_URL, Keys, RunningGateway


async def fetch_presigned(location: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    """Follow a presigned Location with a plain client that carries no gateway credentials."""
    async with ClientSession() as plain, plain.request(method, location) as response:
        return response.status, await response.read(), dict(response.headers)


def assert_presigned(location: str, running: RunningGateway, record_key: str) -> dict[str, list[str]]:
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == running.s3.endpoint_url
    assert parts.path.endswith(record_key)
    query = parse_qs(parts.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "X-Amz-Signature" in query
    return query


# ---- 1. no record


async def test_missing_record_is_404_and_not_cacheable(running: RunningGateway) -> None:
    response = await running.get("/media/nothere/file.pdf")
    assert response.status == 404
    assert response.headers["Cache-Control"] == "private, no-store"
    assert await response.text() == "Not Found\n"


async def test_missing_record_on_draft_host_anonymous_goes_to_login(running: RunningGateway) -> None:
    response = await running.get("/media/nothere/file.pdf", host=DRAFT)
    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith(LOGIN_URL + "?return_to=")
    assert parse_qs(urlsplit(location).query)["return_to"] == [f"http://{DRAFT}/media/nothere/file.pdf"]


# ---- 2. deleted


async def test_deleted_is_410(running: RunningGateway) -> None:
    await running.put(id="gone1", filename="old.pdf", deleted=True)
    response = await running.get("/media/gone1/old.pdf")
    assert response.status == 410
    assert response.headers["Cache-Control"] == "private, no-store"


# ---- 3. replacement


async def test_replaced_by_live_file_redirects_permanently_to_end_of_chain(running: RunningGateway) -> None:
    await running.put(id="rep1", filename="v1.pdf", replacement_id="rep2")
    await running.put(id="rep2", filename="v2.pdf", replacement_id="rep3")
    await running.put(id="rep3", filename="v3.pdf")
    response = await running.get("/media/rep1/v1.pdf")
    assert response.status == 301
    assert response.headers["Location"] == f"http://{LIVE}/media/rep3/v3.pdf"
    assert response.headers["Cache-Control"] == "public, max-age=1800"


async def test_replacement_cycle_is_404(running: RunningGateway) -> None:
    await running.put(id="cyc1", filename="a.pdf", replacement_id="cyc2")
    await running.put(id="cyc2", filename="b.pdf", replacement_id="cyc1")
    assert (await running.get("/media/cyc1/a.pdf")).status == 404


async def test_replaced_by_draft_redirects_only_its_authorised_requesters_on_draft_host(
    running: RunningGateway, keys: Keys
) -> None:
    await running.put(id="old1", filename="a.pdf", replacement_id="new1")
    await running.put(id="new1", filename="b.pdf", draft=True, access_limited={"users": ["editor-1"]})
    live = await running.get("/media/old1/a.pdf")
    assert live.status == 302  # still serves the old file
    assert urlsplit(live.headers["Location"]).netloc == urlsplit(running.s3.endpoint_url).netloc
    anonymous = await running.get("/media/old1/a.pdf", host=DRAFT)
    assert (anonymous.status, anonymous.headers["Location"].split("?")[0]) == (302, LOGIN_URL)
    other = await running.get(
        "/media/old1/a.pdf", host=DRAFT, Authorization=f"Bearer {keys.user_token('editor-2')}"
    )
    assert other.status == 302  # the old file, for editors: never the new one's name
    assert "new1" not in other.headers["Location"]
    draft = await running.get(
        "/media/old1/a.pdf", host=DRAFT, Authorization=f"Bearer {keys.user_token('editor-1')}"
    )
    assert draft.status == 301
    assert draft.headers["Location"] == f"http://{DRAFT}/media/new1/b.pdf"
    assert draft.headers["Cache-Control"] == "private, no-store"
    assert draft.headers["X-Robots-Tag"] == "noindex"


# Defect 2 of the hardening review: a limited record replaced by another limited or draft file
# answered anyone with a public 301 naming it.
@pytest.mark.parametrize("final", [{"access_limited": {"users": ["u1"]}}, {"draft": True}])
@pytest.mark.parametrize("host", [LIVE, DRAFT])
async def test_a_replacement_is_never_named_to_someone_it_does_not_admit(
    running: RunningGateway, keys: Keys, final: dict[str, object], host: str
) -> None:
    await running.put(id="lim1", filename="a.pdf", access_limited={"users": ["u1"]}, replacement_id="lim2")
    await running.put(id="lim2", filename="secret-plan.pdf", **final)
    strangers: list[dict[str, str]] = [{}]
    if "access_limited" in final or host == LIVE:  # on the draft host any user may open a draft
        strangers.append({"Authorization": f"Bearer {keys.user_token('u2')}"})
    for headers in strangers:
        response = await running.get("/media/lim1/a.pdf", host=host, **headers)
        assert response.status in (302, 404)
        assert "lim2" not in response.headers.get("Location", "")
        assert "secret-plan" not in response.headers.get("Location", "")
        assert "public" not in response.headers["Cache-Control"]
    admitted = await running.get(
        "/media/lim1/a.pdf", host=host, Authorization=f"Bearer {keys.user_token('u1')}"
    )
    if host == DRAFT:
        assert admitted.status == 301
        assert admitted.headers["Cache-Control"] == "private, no-store"
    else:  # the live host names only published, unrestricted replacements; u1 gets lim1 itself
        assert admitted.status == 302
        assert "lim2" not in admitted.headers["Location"]


# ---- 4. draft on a live host


async def test_draft_on_live_host_redirects_to_draft_host_keeping_query(running: RunningGateway) -> None:
    await running.put(id="dr1", filename="plan.pdf", draft=True)
    response = await running.get("/media/dr1/plan.pdf?x=1")
    assert response.status == 302
    assert response.headers["Location"] == f"http://{DRAFT}/media/dr1/plan.pdf?x=1"
    assert response.headers["Cache-Control"] == "private, no-store"


# ---- 5. the draft host


async def test_draft_host_anonymous_goes_to_login(running: RunningGateway) -> None:
    await running.put(id="dr2", filename="plan.pdf", draft=True)
    response = await running.get("/media/dr2/plan.pdf", host=DRAFT)
    assert response.status == 302
    assert response.headers["Location"].startswith(LOGIN_URL)


async def test_draft_host_signed_in_user_gets_the_bytes_privately(
    running: RunningGateway, keys: Keys
) -> None:
    record = await running.put(id="dr3", filename="plan.pdf", draft=True)
    token = keys.user_token("editor-1")
    response = await running.get("/media/dr3/plan.pdf", host=DRAFT, Authorization=f"Bearer {token}")
    assert response.status == 302
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Robots-Tag"] == "noindex"
    location = response.headers["Location"]
    assert_presigned(location, running, record.object_key)
    assert token not in location
    status, body, _ = await fetch_presigned(location)
    assert (status, body) == (200, running.objects["dr3"])


async def test_draft_host_session_cookie_works_like_bearer(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="dr4", filename="plan.pdf", draft=True)
    token = keys.user_token("editor-1")
    response = await running.get("/media/dr4/plan.pdf", host=DRAFT, Cookie=f"gateway_session={token}")
    assert response.status == 302
    assert urlsplit(response.headers["Location"]).netloc == urlsplit(running.s3.endpoint_url).netloc


async def test_preview_link_sets_cookie_and_strips_token(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="pv1", filename="p.pdf", draft=True, auth_bypass_ids=["bp-1"])
    token = keys.preview_token("bp-1", ttl=120)
    response = await running.get(f"/media/pv1/p.pdf?a=b&token={token}", host=DRAFT)
    assert response.status == 302
    assert response.headers["Location"] == f"http://{DRAFT}/media/pv1/p.pdf?a=b"
    cookie = response.cookies["auth_bypass_token"]
    assert cookie.value == token
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # plain http here; https sets Secure (next test)
    assert 0 < int(cookie["max-age"]) <= 120
    # the browser follows with the cookie and gets the file
    follow = await running.get("/media/pv1/p.pdf?a=b", host=DRAFT, Cookie=f"auth_bypass_token={token}")
    assert follow.status == 302
    status, body, _ = await fetch_presigned(follow.headers["Location"])
    assert (status, body) == (200, running.objects["pv1"])


async def test_preview_cookie_is_secure_behind_a_trusted_https_proxy(
    running: RunningGateway, keys: Keys
) -> None:
    await running.put(id="pv2", filename="p.pdf", draft=True, auth_bypass_ids=["bp-2"])
    token = keys.preview_token("bp-2")
    response = await running.get(
        f"/media/pv2/p.pdf?token={token}", host=DRAFT, **{"X-Forwarded-Proto": "https"}
    )
    assert response.headers["Location"] == f"https://{DRAFT}/media/pv2/p.pdf"
    assert response.cookies["auth_bypass_token"]["secure"] is True


async def test_preview_link_on_live_host_travels_to_draft_host(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="pv3", filename="p.pdf", draft=True, auth_bypass_ids=["bp-3"])
    token = keys.preview_token("bp-3")
    response = await running.get(f"/media/pv3/p.pdf?token={token}")
    assert response.status == 302
    assert response.headers["Location"] == f"http://{DRAFT}/media/pv3/p.pdf?token={token}"


async def test_preview_token_for_another_file_is_404(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="pv4", filename="p.pdf", draft=True, auth_bypass_ids=["bp-4"])
    token = keys.preview_token("someone-else")
    response = await running.get("/media/pv4/p.pdf", host=DRAFT, Cookie=f"auth_bypass_token={token}")
    assert response.status == 404


async def test_draft_access_preview_opens_unlimited_drafts_only(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="da1", filename="p.pdf", draft=True)
    await running.put(id="da2", filename="p.pdf", draft=True, access_limited={"users": ["u1"]})
    token = keys.preview_token("manager", draft_asset_manager_access=True)
    cookie = f"auth_bypass_token={token}"
    assert (await running.get("/media/da1/p.pdf", host=DRAFT, Cookie=cookie)).status == 302
    assert (await running.get("/media/da2/p.pdf", host=DRAFT, Cookie=cookie)).status == 404


async def test_draft_host_user_not_in_access_list_is_404(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="dl1", filename="p.pdf", draft=True, access_limited={"organisations": ["org-a"]})
    outsider = keys.user_token("u9", org="org-b")
    insider = keys.user_token("u8", org="org-a")
    assert (
        await running.get("/media/dl1/p.pdf", host=DRAFT, Authorization=f"Bearer {outsider}")
    ).status == 404
    assert (
        await running.get("/media/dl1/p.pdf", host=DRAFT, Authorization=f"Bearer {insider}")
    ).status == 302


# ---- 6. access limits on the live host


async def test_access_limited_needs_a_listed_user(running: RunningGateway, keys: Keys) -> None:
    record = await running.put(id="al1", filename="pay.csv", access_limited={"groups": ["finance"]})
    assert (await running.get("/media/al1/pay.csv")).status == 404
    other = keys.user_token("u2", groups=["comms"])
    assert (await running.get("/media/al1/pay.csv", Authorization=f"Bearer {other}")).status == 404
    member = keys.user_token("u3", groups=["comms", "finance"])
    response = await running.get("/media/al1/pay.csv", Authorization=f"Bearer {member}")
    assert response.status == 302
    assert response.headers["Cache-Control"] == "private, no-store"
    assert_presigned(response.headers["Location"], running, record.object_key)
    status, body, _ = await fetch_presigned(response.headers["Location"])
    assert (status, body) == (200, running.objects["al1"])


async def test_organisation_not_listed_is_404_on_the_live_host(running: RunningGateway, keys: Keys) -> None:
    """Limited to one organisation: a member of another one (listed by nothing else) gets 404."""
    await running.put(id="ao1", filename="pay.csv", access_limited={"organisations": ["org-y"]})
    outsider = keys.user_token("u9", org="org-x", groups=["finance"])
    response = await running.get("/media/ao1/pay.csv", Authorization=f"Bearer {outsider}")
    assert response.status == 404
    assert response.headers["Cache-Control"] == "private, no-store"
    member = keys.user_token("u8", org="org-y")
    assert (await running.get("/media/ao1/pay.csv", Authorization=f"Bearer {member}")).status == 302


# ---- 7. scan state


@pytest.mark.parametrize("state", ["unscanned", "clean", "infected"])
async def test_not_uploaded_is_404(running: RunningGateway, state: str) -> None:
    await running.put(id=f"st-{state}", filename="f.pdf", state=state)
    assert (await running.get(f"/media/st-{state}/f.pdf")).status == 404


# ---- 8. filenames


async def test_previous_filename_redirects_to_current(running: RunningGateway) -> None:
    await running.put(id="fn1", filename="new name.pdf", filename_history=["old.pdf"])
    response = await running.get("/media/fn1/old.pdf")
    assert response.status == 302
    assert response.headers["Location"] == f"http://{LIVE}/media/fn1/new%20name.pdf"
    assert (await running.get("/media/fn1/never.pdf")).status == 404


# ---- 9. redirect_url


async def test_redirect_url(running: RunningGateway) -> None:
    await running.put(id="rd1", filename="f.pdf", redirect_url="https://www.example.org/elsewhere", body=None)
    response = await running.get("/media/rd1/f.pdf")
    assert response.status == 302
    assert response.headers["Location"] == "https://www.example.org/elsewhere"


# ---- 10. serving


async def test_public_file_redirects_to_presigned_url_with_disposition(running: RunningGateway) -> None:
    record = await running.put(id="pub1", filename="résumé 2024.pdf", etag='"e-1"')
    response = await running.get("/media/pub1/r%C3%A9sum%C3%A9%202024.pdf")
    assert response.status == 302
    cache = response.headers["Cache-Control"]
    assert cache.startswith("public, max-age=")
    max_age = int(cache.split("=")[1])
    query = assert_presigned(response.headers["Location"], running, record.object_key)
    assert 0 < max_age < int(query["X-Amz-Expires"][0])  # the cached redirect never outlives its URL
    assert query["response-content-type"] == ["application/pdf"]
    disposition = query["response-content-disposition"][0]
    assert disposition.startswith('inline; filename="r_sum_ 2024.pdf"')
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf" in disposition
    assert "ETag" not in response.headers  # a cached redirect must not be renewed by a 304
    status, body, headers = await fetch_presigned(response.headers["Location"])
    assert (status, body) == (200, running.objects["pub1"])
    assert headers["Content-Disposition"] == disposition


async def test_head_is_signed_for_head(running: RunningGateway) -> None:
    await running.put(id="hd1", filename="f.pdf")
    response = await running.get("/media/hd1/f.pdf", method="HEAD")
    assert response.status == 302
    status, body, headers = await fetch_presigned(response.headers["Location"], "HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) == len(running.objects["hd1"])


async def test_matching_if_none_match_is_304(running: RunningGateway) -> None:
    await running.put(id="et1", filename="f.pdf", etag='"abc"')
    response = await running.get("/media/et1/f.pdf", **{"If-None-Match": 'W/"x", "abc"'})
    assert response.status == 304
    assert response.headers["ETag"] == '"abc"'
    assert "Location" not in response.headers
    assert (await running.get("/media/et1/f.pdf", **{"If-None-Match": '"zzz"'})).status == 302


async def test_restricted_304_stays_private(running: RunningGateway, keys: Keys) -> None:
    await running.put(id="et2", filename="f.pdf", etag='"abc"', access_limited={"users": ["u1"]})
    token = keys.user_token("u1")
    response = await running.get(
        "/media/et2/f.pdf", Authorization=f"Bearer {token}", **{"If-None-Match": '"abc"'}
    )
    assert response.status == 304
    assert response.headers["Cache-Control"] == "private, no-store"


# ---- hosts, paths, methods, sizes


async def test_unknown_host_is_404(running: RunningGateway) -> None:
    await running.put(id="h1", filename="f.pdf")
    assert (await running.get("/media/h1/f.pdf", host="evil.test")).status == 404


async def test_trusted_proxy_forwarded_host_and_proto_choose_the_origin(running: RunningGateway) -> None:
    # The test client is 127.0.0.1, trusted by default; untrusted peers are covered in test_parsing.
    await running.put(id="fh1", filename="f.pdf", draft=True)
    headers = {"X-Forwarded-Host": LIVE, "X-Forwarded-Proto": "https"}
    response = await running.get("/media/fh1/f.pdf", host="internal:8080", **headers)
    assert response.status == 302
    assert response.headers["Location"] == f"https://{DRAFT}/media/fh1/f.pdf"


@pytest.mark.parametrize(
    "path",
    ["/", "/media", "/media/x", "/media/x/y/z", "/media/bad%20id/f.pdf", "/other/x/y.pdf", "/media/x/"],
)
async def test_other_paths_are_404(running: RunningGateway, path: str) -> None:
    response = await running.get(path)
    assert response.status == 404
    assert response.headers["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_405(running: RunningGateway, method: str) -> None:
    response = await running.get("/media/abc/f.pdf", method=method)
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD"


async def test_oversized_url_and_header_get_a_bare_400(
    running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = "SECRETPART"
    long_path = "/media/abc/" + marker * 2000 + ".pdf"
    huge_cookie = "gateway_session=" + marker * 2000
    for response in (await running.get(long_path), await running.get("/media/abc/f.pdf", Cookie=huge_cookie)):
        assert response.status == 400
        assert await response.text() == "Bad Request\n"
        assert response.headers["Cache-Control"] == "private, no-store"
    assert all(marker not in record.getMessage() and not record.exc_info for record in caplog.records)


async def test_server_header_hides_versions(running: RunningGateway) -> None:
    response = await running.get("/media/none/f.pdf")
    assert response.headers["Server"] == "asset-gateway"


# ---- logging


async def test_one_access_line_per_request_without_tokens(
    running: RunningGateway, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    await running.put(id="lg1", filename="f.pdf", draft=True, auth_bypass_ids=["bp-9"])
    token = keys.preview_token("bp-9")
    user = keys.user_token("u-log")
    caplog.set_level(logging.INFO, logger="gateway.access")
    await running.get(f"/media/lg1/f.pdf?token={token}", host=DRAFT)
    await running.get(
        "/media/lg1/f.pdf", host=DRAFT, Authorization=f"Bearer {user}", **{"X-Request-Id": "rid-1"}
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 2
    for line in lines:
        assert token not in line and user not in line
    import json

    first, second = (json.loads(line) for line in lines)
    assert first["rule"] == "preview_link_sets_cookie" and first["status"] == 302
    assert first["path"] == "/media/lg1/f.pdf" and first["preview"] == "bp-9"
    assert second["subject"] == "u-log" and second["request_id"] == "rid-1"
    assert {"host", "asset_id", "outcome", "duration_ms", "policy_revision"} <= second.keys()
    assert (first["level"], first["logger"], first["event"]) == ("info", "gateway.access", "access")


async def test_the_access_line_names_the_client_its_agent_and_its_trace(
    running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The test client is 127.0.0.1, a trusted proxy by default: its X-Forwarded-For is believed."""
    caplog.set_level(logging.INFO, logger="gateway.access")
    await running.get(
        "/media/nothere/f.pdf", **{
            "X-Forwarded-For": "198.51.100.4, 127.0.0.1", "User-Agent": "agent/" + "x" * 500,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    )  # fmt: skip
    import json

    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    assert line["client_ip"] == "198.51.100.4"
    assert line["user_agent"] == ("agent/" + "x" * 500)[:200]
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


# ---- warm hits answered before routing (gateway.http.public.answer_before_routing)


def _shape(response: ClientResponse) -> tuple[int, dict[str, str]]:
    """Status and headers, but those that differ per response (max-age may tick between two)."""
    headers = {k.lower(): v for k, v in response.headers.items()}
    for name in ("x-request-id", "date"):
        headers.pop(name)
    headers["cache-control"] = headers["cache-control"].partition("max-age=")[0]
    return response.status, headers


async def test_a_warm_hit_answered_before_routing_is_the_routed_answer(running: RunningGateway) -> None:
    await running.put(id="hot1", filename="a.pdf")
    answers = running.gateway.answers
    assert answers is not None
    first = await running.get("/media/hot1/a.pdf")
    hits = answers.hits
    second = await running.get("/media/hot1/a.pdf")
    assert answers.hits == hits + 1  # the second came from the answer cache
    assert _shape(second) == _shape(first)
    assert second.headers["Server"] == "asset-gateway"
    assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]


async def test_an_auth_subrequest_hit_is_the_routed_answer(running: RunningGateway) -> None:
    await running.put(id="hot2", filename="a.pdf")
    answers = running.gateway.answers
    assert answers is not None
    auth = {"X-Original-URI": "/media/hot2/a.pdf", "X-Original-Method": "GET"}
    first = await running.get("/auth", **auth)
    assert first.status == 204 and first.headers["X-Asset-Status"] == "200"
    hits = answers.hits
    second = await running.get("/auth", **auth)
    assert answers.hits == hits + 1
    assert second.status == 204 and second.headers["Server"] == "asset-gateway"
    assert second.headers["X-Asset-Location"] == first.headers["X-Asset-Location"]
    assert (await running.get("/media/hot2/a.pdf")).status == 302  # its own key, not the /auth answer
    wrong_method = await running.session.post(running.base_url + "/auth", headers={"Host": LIVE, **auth})
    assert wrong_method.status == 404  # not routed to /auth, so not its cached answer


async def test_legacy_urls_never_take_the_shortcut(running: RunningGateway) -> None:
    answers = running.gateway.answers
    assert answers is not None
    hits = answers.hits
    for _ in range(3):
        response = await running.get("/government/uploads/system/uploads/attachment_data/file/1/x.pdf")
        assert response.status == 404
    assert answers.hits == hits
