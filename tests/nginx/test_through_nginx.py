"""Every row of DESIGN 2.6 through a real nginx, in both shipped modes (auth_request and accel): the
status and headers the contract gives that row (written here, per row), and, as a cross-check, the
answer the gateway gives directly in redirect delivery: the same status, Location, cookies and
headers, and for a served file the bytes S3 holds (nginx answers 200 where the gateway redirects).
Nothing of S3's own leaks out, and no token reaches S3."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiohttp import ClientSession

from gateway.legacy import LEGACY_PREFIX, normalise_legacy_path
from tests.http.conftest import DRAFT, LIVE, LOGIN_URL, Keys
from tests.nginx.conftest import Answer, Through, run_nginx
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the nginx stack lives for the module

Headers = Callable[[Keys], dict[str, str]]


def _none(keys: Keys) -> dict[str, str]:
    return {}


PRIVATE = "private, no-store"
PUBLIC_SERVE = "public, max-age=N (N <= s3.presign_ttl)"  # a served file: never outlives its URL
PRESIGN_TTL = 300  # tests.http.conftest.gateway_settings
ACCEL_LOCATION = "/_asset_s3"  # the internal location nginx/accel.conf.template defines


@dataclass(frozen=True)
class Expect:
    """What the browser gets through nginx, written from DESIGN 2.6 for this row, not taken from
    the gateway's direct answer. `served`: the record whose bytes and file headers come back."""

    status: int
    location: str | None = None
    cache_control: str = PRIVATE
    noindex: bool = False
    served: dict[str, Any] | None = None
    etag: str | None = None
    allow: str | None = None
    s3_refuses: bool = False  # the gateway allowed it, S3 has no such object (its 403 passes through)
    cdn_keys: str | None = None  # DESIGN 2.9: Surrogate-Key on publicly cacheable answers only


def denied(status: int) -> Expect:
    return Expect(status)


def redirect(status: int, location: str, cache_control: str = PRIVATE) -> Expect:
    return Expect(status, location=location, cache_control=cache_control)


def to_login(host: str, path: str) -> Expect:
    return redirect(302, f"{LOGIN_URL}?return_to={quote(f'http://{host}{path}', safe='')}")


def serves(record: dict[str, Any], *, private: bool) -> Expect:
    return Expect(
        200,
        cache_control=PRIVATE if private else PUBLIC_SERVE,
        noindex=private,
        served=record,
        etag=record.get("etag"),
        cdn_keys=None if private else f"asset-{record['id']}",
    )


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    records: tuple[dict[str, Any], ...] = ()
    host: str = LIVE
    method: str = "GET"
    headers: Headers = field(default=_none)
    expect: Expect = field(default=Expect(0))


def bearer(sub: str, **claims: Any) -> Headers:
    return lambda keys: {"Authorization": f"Bearer {keys.user_token(sub, **claims)}"}


def session_cookie(sub: str) -> Headers:
    return lambda keys: {"Cookie": f"gateway_session={keys.user_token(sub)}"}


def preview_cookie(sub: str, **claims: Any) -> Headers:
    return lambda keys: {"Cookie": f"auth_bypass_token={keys.preview_token(sub, **claims)}"}


PUBLIC = {
    "id": "pub1",
    "filename": "résumé 2024.pdf",
    "etag": '"e-1"',
    "last_modified": "2018-01-19T11:15:58Z",
    "parent_document_url": "https://www.example.org/budget",
}
PUBLIC_PATH = "/media/pub1/r%C3%A9sum%C3%A9%202024.pdf"
DRAFT_FILE = {"id": "dr1", "filename": "plan.pdf", "draft": True}
PREVIEWABLE = {"id": "pv1", "filename": "p.pdf", "draft": True, "auth_bypass_ids": ["bp-1"]}
LIMITED = {
    "id": "al1",
    "filename": "pay.csv",
    "content_type": "text/csv",
    "access_limited": {"groups": ["finance"]},
}

REPLACED_BY_DRAFT = (
    {"id": "old1", "filename": "a.pdf", "replacement_id": "new1"},
    {"id": "new1", "filename": "b.pdf", "draft": True},
)
LIMITED_TO_ORG_A = {
    "id": "dl1",
    "filename": "p.pdf",
    "draft": True,
    "access_limited": {"organisations": ["org-a"]},
}
MISSING_OBJECT = {"id": "nobody", "filename": "f.pdf", "body": None}
RENAMED = {"id": "fn1", "filename": "new name.pdf", "filename_history": ["old.pdf"]}


LEGACY_PATH = "/government/uploads/system/uploads/attachment_data/file/1/spring%20budget.pdf"
LEGACY_PUBLIC = {
    "id": "lg1",
    "filename": "budget-2014.pdf",
    "etag": '"s3-1"',
    "legacy_etag": '"nfs-1"',
    "last_modified": "2024-01-19T11:15:58Z",
    "legacy_last_modified": "2014-03-19T10:00:00Z",
    "legacy_url_path": "/government/uploads/system/uploads/attachment_data/file/1/spring budget.pdf",
}


def legacy(asset_id: str, name: str = "f.pdf", **fields: Any) -> dict[str, Any]:
    return {"id": asset_id, "filename": "other-name.pdf", "legacy_url_path": f"/government/uploads/t/{name}",
            **fields}  # fmt: skip


def legacy_answer(record: dict[str, Any]) -> dict[str, Any]:
    """The record as its legacy URL answers: legacy_etag/legacy_last_modified replace the others."""
    renamed = {"legacy_etag": "etag", "legacy_last_modified": "last_modified"}
    legacy_values = {renamed[name]: value for name, value in record.items() if name in renamed}
    return {**record, **legacy_values}


LEGACY_SERVED = legacy_answer(LEGACY_PUBLIC)
LEGACY_NON_ASCII = legacy("na1", "café.pdf")
LEGACY_DRAFT = legacy("lf1", draft=True)
LEGACY_PREVIEWABLE = legacy("lf2", draft=True, auth_bypass_ids=["bp-1"])
LEGACY_LIMITED = legacy("ll1", access_limited={"users": ["u1"]})
PLACEHOLDER = "/government/placeholder"  # [legacy] placeholder, a path on the requested host
IMAGE_PLACEHOLDER = "/asset-manager/thumbnail-placeholder-image.png"


def to_placeholder(target: str, asset_id: str) -> Expect:
    """A public file not yet cleared: a short public 302, tagged to be purged with the asset."""
    return replace(
        redirect(302, f"http://{LIVE}{target}", "public, max-age=60"), cdn_keys=f"asset-{asset_id}"
    )


# DESIGN 2.8: the rows a legacy URL answers, as its /media URL would plus the legacy rules.
LEGACY_CASES = [
    Case(
        "legacy_public_is_served_with_legacy_validators",
        LEGACY_PATH,
        (LEGACY_PUBLIC,),
        expect=serves(LEGACY_SERVED, private=False),
    ),
    Case(
        "legacy_head_is_served",
        LEGACY_PATH,
        (LEGACY_PUBLIC,),
        method="HEAD",
        expect=serves(LEGACY_SERVED, private=False),
    ),
    Case(
        "legacy_other_spelling_is_served",
        LEGACY_PATH.replace("spring", "%73pring"),
        (LEGACY_PUBLIC,),
        expect=serves(LEGACY_SERVED, private=False),
    ),
    Case(
        "legacy_non_ascii_is_served",
        "/government/uploads/t/caf%C3%A9.pdf",
        (LEGACY_NON_ASCII,),
        expect=serves(LEGACY_NON_ASCII, private=False),
    ),
    Case("legacy_missing_is_404", "/government/uploads/t/none.pdf", expect=denied(404)),
    Case(
        "legacy_missing_on_draft_host_goes_to_login",
        "/government/uploads/t/none.pdf",
        host=DRAFT,
        expect=to_login(DRAFT, "/government/uploads/t/none.pdf"),
    ),
    Case(
        "legacy_no_extension_is_404",
        "/government/uploads/t/README",
        (legacy("ne1", "README"),),
        expect=denied(404),
    ),
    Case(
        "legacy_deleted_is_410",
        "/government/uploads/t/f.pdf",
        (legacy("ld1", deleted=True),),
        expect=denied(410),
    ),
    Case(
        "legacy_replaced_redirects_to_the_media_url",
        "/government/uploads/t/f.pdf",
        (legacy("lr1", replacement_id="lr2"), {"id": "lr2", "filename": "v2.pdf"}),
        expect=replace(
            redirect(301, f"http://{LIVE}/media/lr2/v2.pdf", "public, max-age=1800"),
            cdn_keys="asset-lr1 asset-lr2",
        ),
    ),
    Case(
        "legacy_draft_on_live_host_goes_to_draft_host",
        "/government/uploads/t/f.pdf?x=1",
        (LEGACY_DRAFT,),
        expect=redirect(302, f"http://{DRAFT}/government/uploads/t/f.pdf?x=1"),
    ),
    Case(
        "legacy_draft_host_anonymous_goes_to_login",
        "/government/uploads/t/f.pdf",
        (LEGACY_DRAFT,),
        host=DRAFT,
        expect=to_login(DRAFT, "/government/uploads/t/f.pdf"),
    ),
    Case(
        "legacy_draft_host_user_is_served_privately",
        "/government/uploads/t/f.pdf",
        (LEGACY_DRAFT,),
        host=DRAFT,
        headers=bearer("editor-1"),
        expect=serves(LEGACY_DRAFT, private=True),
    ),
    Case(
        "legacy_draft_host_preview_cookie_is_served",
        "/government/uploads/t/f.pdf",
        (LEGACY_PREVIEWABLE,),
        host=DRAFT,
        headers=preview_cookie("bp-1"),
        expect=serves(LEGACY_PREVIEWABLE, private=True),
    ),
    Case(
        "legacy_limited_anonymous_is_404",
        "/government/uploads/t/f.pdf",
        (LEGACY_LIMITED,),
        expect=denied(404),
    ),
    Case(
        "legacy_limited_listed_user_is_served_privately",
        "/government/uploads/t/f.pdf",
        (LEGACY_LIMITED,),
        headers=bearer("u1"),
        expect=serves(LEGACY_LIMITED, private=True),
    ),
    Case(
        "legacy_unscanned_goes_to_the_placeholder",
        "/government/uploads/t/f.pdf",
        (legacy("lu1", state="unscanned"),),
        expect=to_placeholder(PLACEHOLDER, "lu1"),
    ),
    Case(
        "legacy_clean_image_goes_to_the_image_placeholder",
        "/government/uploads/t/c.png",
        (legacy("lc1", "c.png", state="clean"),),
        expect=to_placeholder(IMAGE_PLACEHOLDER, "lc1"),
    ),
    Case(
        "legacy_infected_is_404",
        "/government/uploads/t/f.pdf",
        (legacy("li1", state="infected"),),
        expect=denied(404),
    ),
    Case(
        "legacy_redirect_url_redirects",
        "/government/uploads/t/f.pdf",
        (legacy("lu2", redirect_url="https://www.example.org/new-home"),),
        expect=redirect(302, "https://www.example.org/new-home"),
    ),
    Case(
        "legacy_etag_is_304",
        LEGACY_PATH,
        (LEGACY_PUBLIC,),
        headers=lambda keys: {"If-None-Match": '"nfs-1"'},
        expect=Expect(304, cache_control=PUBLIC_SERVE, etag='"nfs-1"', cdn_keys="asset-lg1"),
    ),
    Case(
        "legacy_current_etag_is_not_304",
        LEGACY_PATH,
        (LEGACY_PUBLIC,),
        headers=lambda keys: {"If-None-Match": '"s3-1"'},
        expect=serves(LEGACY_SERVED, private=False),
    ),
    Case("legacy_unknown_host_is_404", LEGACY_PATH, (LEGACY_PUBLIC,), host="evil.test", expect=denied(404)),
    Case(
        "legacy_post_is_405",
        LEGACY_PATH,
        (LEGACY_PUBLIC,),
        method="POST",
        expect=Expect(405, allow="GET, HEAD"),
    ),
]

CASES = [
    # 1. no record
    Case("missing_record_is_404", "/media/nothere/file.pdf", expect=denied(404)),
    Case(
        "missing_record_on_draft_host_goes_to_login",
        "/media/nothere/file.pdf",
        host=DRAFT,
        expect=to_login(DRAFT, "/media/nothere/file.pdf"),
    ),
    Case(
        "missing_record_on_draft_host_with_token_is_404",
        "/media/nothere/file.pdf",
        host=DRAFT,
        headers=bearer("editor-1"),
        expect=denied(404),
    ),
    # 2. deleted
    Case(
        "deleted_is_410",
        "/media/gone1/old.pdf",
        ({"id": "gone1", "filename": "old.pdf", "deleted": True},),
        expect=denied(410),
    ),
    # 3. replacement
    Case(
        "replaced_redirects_permanently_to_end_of_chain",
        "/media/rep1/v1.pdf",
        (
            {"id": "rep1", "filename": "v1.pdf", "replacement_id": "rep2"},
            {"id": "rep2", "filename": "v2.pdf", "replacement_id": "rep3"},
            {"id": "rep3", "filename": "v3.pdf"},
        ),
        expect=replace(
            redirect(301, f"http://{LIVE}/media/rep3/v3.pdf", "public, max-age=1800"),
            cdn_keys="asset-rep1 asset-rep3",  # a purge of either end finds it
        ),
    ),
    Case(
        "replacement_cycle_is_404",
        "/media/cyc1/a.pdf",
        (
            {"id": "cyc1", "filename": "a.pdf", "replacement_id": "cyc2"},
            {"id": "cyc2", "filename": "b.pdf", "replacement_id": "cyc1"},
        ),
        expect=denied(404),
    ),
    Case(
        "replaced_by_draft_still_serves_on_live_host",
        "/media/old1/a.pdf",
        REPLACED_BY_DRAFT,
        expect=serves(REPLACED_BY_DRAFT[0], private=False),
    ),
    Case(
        "replaced_by_draft_redirects_privately_on_draft_host_for_a_signed_in_user",
        "/media/old1/a.pdf",
        REPLACED_BY_DRAFT,
        host=DRAFT,
        headers=bearer("editor-1"),
        expect=replace(redirect(301, f"http://{DRAFT}/media/new1/b.pdf"), noindex=True),  # private: noindex
    ),
    Case(
        "replaced_by_draft_is_not_named_to_an_anonymous_visitor_on_draft_host",
        "/media/old1/a.pdf",
        REPLACED_BY_DRAFT,
        host=DRAFT,
        expect=to_login(DRAFT, "/media/old1/a.pdf"),
    ),
    # 4. draft on a live host
    Case(
        "draft_on_live_host_goes_to_draft_host_keeping_query",
        "/media/dr1/plan.pdf?x=1",
        (DRAFT_FILE,),
        expect=redirect(302, f"http://{DRAFT}/media/dr1/plan.pdf?x=1"),
    ),
    # 5. the draft host
    Case(
        "draft_host_anonymous_goes_to_login",
        "/media/dr1/plan.pdf",
        (DRAFT_FILE,),
        host=DRAFT,
        expect=to_login(DRAFT, "/media/dr1/plan.pdf"),
    ),
    Case(
        "draft_host_signed_in_user_is_served_privately",
        "/media/dr1/plan.pdf",
        (DRAFT_FILE,),
        host=DRAFT,
        headers=bearer("editor-1"),
        expect=serves(DRAFT_FILE, private=True),
    ),
    Case(
        "draft_host_session_cookie_is_served",
        "/media/dr1/plan.pdf",
        (DRAFT_FILE,),
        host=DRAFT,
        headers=session_cookie("editor-1"),
        expect=serves(DRAFT_FILE, private=True),
    ),
    Case(
        "draft_host_preview_cookie_is_served",
        "/media/pv1/p.pdf?a=b",
        (PREVIEWABLE,),
        host=DRAFT,
        headers=preview_cookie("bp-1"),
        expect=serves(PREVIEWABLE, private=True),
    ),
    Case(
        "preview_token_for_another_file_is_404",
        "/media/pv1/p.pdf",
        (PREVIEWABLE,),
        host=DRAFT,
        headers=preview_cookie("someone-else"),
        expect=denied(404),
    ),
    Case(
        "draft_access_preview_opens_unlimited_draft",
        "/media/da1/p.pdf",
        ({"id": "da1", "filename": "p.pdf", "draft": True},),
        host=DRAFT,
        headers=preview_cookie("manager", draft_asset_manager_access=True),
        expect=serves({"id": "da1", "filename": "p.pdf"}, private=True),
    ),
    Case(
        "draft_access_preview_does_not_open_limited_draft",
        "/media/da2/p.pdf",
        ({"id": "da2", "filename": "p.pdf", "draft": True, "access_limited": {"users": ["u1"]}},),
        host=DRAFT,
        headers=preview_cookie("manager", draft_asset_manager_access=True),
        expect=denied(404),
    ),
    Case(
        "draft_host_user_outside_access_list_is_404",
        "/media/dl1/p.pdf",
        (LIMITED_TO_ORG_A,),
        host=DRAFT,
        headers=bearer("u9", org="org-b"),
        expect=denied(404),
    ),
    Case(
        "draft_host_user_inside_access_list_is_served",
        "/media/dl1/p.pdf",
        (LIMITED_TO_ORG_A,),
        host=DRAFT,
        headers=bearer("u8", org="org-a"),
        expect=serves(LIMITED_TO_ORG_A, private=True),
    ),
    # 6. access limits on the live host
    Case("access_limited_anonymous_is_404", "/media/al1/pay.csv", (LIMITED,), expect=denied(404)),
    Case(
        "access_limited_unlisted_user_is_404",
        "/media/al1/pay.csv",
        (LIMITED,),
        headers=bearer("u2", groups=["comms"]),
        expect=denied(404),
    ),
    Case(
        "access_limited_user_of_another_organisation_is_404",
        "/media/ao1/pay.csv",
        ({"id": "ao1", "filename": "pay.csv", "access_limited": {"organisations": ["org-y"]}},),
        headers=bearer("u2", org="org-x"),
        expect=denied(404),
    ),
    Case(
        "access_limited_listed_user_is_served_privately",
        "/media/al1/pay.csv",
        (LIMITED,),
        headers=bearer("u3", groups=["comms", "finance"]),
        expect=serves(LIMITED, private=True),
    ),
    # 7. scan state
    *(
        Case(
            f"state_{state}_is_404",
            f"/media/st-{state}/f.pdf",
            ({"id": f"st-{state}", "filename": "f.pdf", "state": state},),
            expect=denied(404),
        )
        for state in ("unscanned", "clean", "infected")
    ),
    # 8. filenames
    Case(
        "previous_filename_redirects_to_current",
        "/media/fn1/old.pdf",
        (RENAMED,),
        expect=redirect(302, f"http://{LIVE}/media/fn1/new%20name.pdf"),
    ),
    Case("unknown_filename_is_404", "/media/fn1/never.pdf", (RENAMED,), expect=denied(404)),
    # 9. redirect_url
    Case(
        "redirect_url_redirects",
        "/media/rd1/f.pdf",
        (
            {
                "id": "rd1",
                "filename": "f.pdf",
                "redirect_url": "https://www.example.org/elsewhere",
                "body": None,
            },
        ),
        expect=redirect(302, "https://www.example.org/elsewhere"),
    ),
    # 10. serving
    Case(
        "public_file_is_served_with_its_headers", PUBLIC_PATH, (PUBLIC,), expect=serves(PUBLIC, private=False)
    ),
    Case("public_file_head", PUBLIC_PATH, (PUBLIC,), method="HEAD", expect=serves(PUBLIC, private=False)),
    Case(
        "matching_if_none_match_is_304",
        PUBLIC_PATH,
        (PUBLIC,),
        headers=lambda keys: {"If-None-Match": 'W/"x", "e-1"'},
        expect=Expect(304, cache_control=PUBLIC_SERVE, etag='"e-1"', cdn_keys="asset-pub1"),
    ),
    Case(
        "other_if_none_match_is_served",
        PUBLIC_PATH,
        (PUBLIC,),
        headers=lambda keys: {"If-None-Match": '"zzz"'},
        expect=serves(PUBLIC, private=False),
    ),
    Case(
        "restricted_304_stays_private",
        "/media/et2/f.pdf",
        ({"id": "et2", "filename": "f.pdf", "etag": '"abc"', "access_limited": {"users": ["u1"]}},),
        headers=lambda keys: {"Authorization": f"Bearer {keys.user_token('u1')}", "If-None-Match": '"abc"'},
        expect=Expect(304, noindex=True, etag='"abc"'),
    ),
    Case(
        "served_file_missing_from_the_bucket_is_s3s_403_never_cached",
        "/media/nobody/f.pdf",
        (MISSING_OBJECT,),
        expect=Expect(403, s3_refuses=True),
    ),
    # hosts, paths, methods
    Case("unknown_host_is_404", "/media/pub1/x.pdf", (PUBLIC,), host="evil.test", expect=denied(404)),
    *(
        Case(f"path_{n}_is_404", path, expect=denied(404))
        for n, path in enumerate(["/", "/media", "/media/x", "/media/x/y/z", "/other/x/y.pdf"])
    ),
    *(
        Case(
            f"{method.lower()}_is_405",
            PUBLIC_PATH,
            (PUBLIC,),
            method=method,
            expect=Expect(405, allow="GET, HEAD"),
        )
        for method in ("POST", "PUT", "DELETE", "OPTIONS")
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_row_answers_as_the_contract_says(through: Through, keys: Keys, case: Case) -> None:
    await assert_row(through, keys, case)


@pytest.mark.parametrize("case", LEGACY_CASES, ids=[case.name for case in LEGACY_CASES])
async def test_legacy_row_answers_as_the_contract_says(through: Through, keys: Keys, case: Case) -> None:
    """DESIGN 2.8 (the gateway's own legacy answers: tests/http/test_legacy_http.py)."""
    await assert_row(through, keys, case)


async def assert_row(through: Through, keys: Keys, case: Case) -> None:
    """Through nginx, in this mode, the row's own expected answer; then, as an extra, the same answer
    as the gateway gives directly."""
    for record in case.records:
        await through.put(**record)
    headers = case.headers(keys)
    via = await through.via_nginx(case.path, host=case.host, method=case.method, **headers)
    assert_as_expected(through, case, via)
    if through.mode == "accel":  # what nginx was handed: the file only when the decision serves it
        fronted = await through.fronted(case.path, host=case.host, method=case.method, **headers)
        delivered = case.expect.served is not None or case.expect.s3_refuses
        assert fronted.header("x-accel-redirect") == (ACCEL_LOCATION if delivered else None)
    direct = await through.direct(case.path, host=case.host, method=case.method, **headers)
    await assert_same_answer(through, direct, via, case.method, served_etag(case))
    assert_nothing_leaked(through, via, headers)


async def test_legacy_validators_reach_the_browser(through: Through) -> None:
    await through.put(**LEGACY_PUBLIC)
    via = await through.via_nginx(LEGACY_PATH)
    assert via.status == 200 and via.body == through.objects["lg1"]
    assert via.header("etag") == '"nfs-1"'
    assert via.header("last-modified") == "Wed, 19 Mar 2014 10:00:00 GMT"
    assert "budget-2014.pdf" in (via.header("content-disposition") or "")


async def test_preview_link_sets_the_cookie_and_strips_the_token(through: Through, keys: Keys) -> None:
    await through.put(**PREVIEWABLE)
    token = keys.preview_token("bp-1", ttl=120)
    path = f"/media/pv1/p.pdf?a=b&token={token}"
    direct = await through.direct(path, host=DRAFT)
    via = await through.via_nginx(path, host=DRAFT)
    assert via.status == direct.status == 302
    assert via.header("location") == direct.header("location") == f"http://{DRAFT}/media/pv1/p.pdf?a=b"
    sent, expected = _cookie(via), _cookie(direct)
    assert sent.value == expected.value == token
    for attribute in ("path", "httponly", "samesite", "secure"):
        assert sent[attribute] == expected[attribute], attribute
    assert abs(int(sent["max-age"]) - int(expected["max-age"])) <= 1
    # the browser comes back with the cookie and gets the bytes
    follow = await through.via_nginx("/media/pv1/p.pdf?a=b", host=DRAFT, Cookie=f"auth_bypass_token={token}")
    assert (follow.status, follow.body) == (200, through.objects["pv1"])
    assert_nothing_leaked(through, follow, {"token": token})


async def test_preview_link_on_live_host_travels_to_the_draft_host(through: Through, keys: Keys) -> None:
    await through.put(**PREVIEWABLE)
    token = keys.preview_token("bp-1")
    via = await through.via_nginx(f"/media/pv1/p.pdf?token={token}")
    assert via.status == 302
    assert via.header("location") == f"http://{DRAFT}/media/pv1/p.pdf?token={token}"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_range_is_206_with_the_right_bytes(through: Through, keys: Keys, method: str) -> None:
    await through.put(**LIMITED)
    body = through.objects["al1"]
    token = keys.user_token("u3", groups=["finance"])
    via = await through.via_nginx(
        "/media/al1/pay.csv", method=method, Authorization=f"Bearer {token}", Range="bytes=5-24"
    )
    assert via.status == 206
    assert via.header("content-range") == f"bytes 5-24/{len(body)}"
    assert via.body == (body[5:25] if method == "GET" else b"")
    assert via.header("cache-control") == "private, no-store"
    assert via.header("content-type") == "text/csv"
    assert_nothing_leaked(through, via, {"token": token})


async def test_range_with_if_range_is_answered_in_full(through: Through) -> None:
    await through.put(**PUBLIC)
    via = await through.via_nginx(PUBLIC_PATH, Range="bytes=0-3", **{"If-Range": '"e-1"'})
    assert (via.status, via.body) == (200, through.objects["pub1"])


async def test_tokens_never_reach_s3(through: Through, keys: Keys) -> None:
    await through.put(**{**DRAFT_FILE, "auth_bypass_ids": ["bp-2"]})
    user = keys.user_token("editor-1")
    preview = keys.preview_token("bp-2")
    headers = {
        "Authorization": f"Bearer {user}",
        "Cookie": f"gateway_session={user}; auth_bypass_token={preview}",
    }
    via = await through.via_nginx("/media/dr1/plan.pdf", host=DRAFT, **headers)
    assert (via.status, via.body) == (200, through.objects["dr1"])
    heads = through.relay.request_heads()
    assert heads, "nothing reached S3"
    for head in heads:
        names = {line.split(":", 1)[0].lower() for line in head.split("\r\n")[1:] if line}
        assert not names & {"authorization", "cookie", "x-forwarded-for", "if-none-match"}, head
    everything = through.relay.everything()
    assert user.encode() not in everything and preview.encode() not in everything


async def test_request_id_is_nginx_s_and_reaches_the_gateway_log(
    through: Through, caplog: pytest.LogCaptureFixture
) -> None:
    await through.put(**PUBLIC)
    caplog.set_level(logging.INFO, logger="gateway.access")
    served = await through.via_nginx(PUBLIC_PATH)
    missing = await through.via_nginx("/media/nothere/f.pdf")
    logged = [json.loads(r.getMessage())["request_id"] for r in caplog.records if r.name == "gateway.access"]
    answered = [served.header("x-request-id"), missing.header("x-request-id")]
    assert all(answered) and logged == answered


async def test_auth_endpoint_is_not_reachable_through_nginx(through: Through) -> None:
    via = await through.via_nginx("/auth", **{"X-Original-URI": PUBLIC_PATH})
    assert via.status == 404
    assert via.header("cache-control") == "private, no-store"


async def test_redis_down_is_503_with_retry_after(through: Through, redis_server: RedisServer) -> None:
    redis_server.stop()
    try:
        direct = await through.direct("/media/cold/f.pdf")
        via = await through.via_nginx("/media/cold/f.pdf")
    finally:
        redis_server.start()
    assert via.status == direct.status == 503
    assert via.header("retry-after") == direct.header("retry-after") == "5"
    assert via.header("cache-control") == "private, no-store"


@pytest.mark.parametrize("mode", ["auth_request", "accel"])
async def test_gateway_down_is_503_with_retry_after(mode: str) -> None:
    with run_nginx(f"{mode}.conf.template", f"127.0.0.1:{free_port()}") as nginx:  # nobody listens
        async with (
            ClientSession() as session,
            session.get(f"{nginx.base_url}{PUBLIC_PATH}", headers={"Host": LIVE}) as response,
        ):
            via = await Answer.read(response)
    assert via.status == 503
    assert via.header("retry-after") == "5"
    assert via.header("cache-control") == "private, no-store"
    assert via.body == b"Service Unavailable\n"


# ---- helpers


def assert_as_expected(through: Through, case: Case, via: Answer) -> None:
    want = case.expect
    assert via.status == want.status, (case.name, via)
    assert via.header("location") == want.location
    assert via.headers.get("surrogate-key", []) == ([want.cdn_keys] if want.cdn_keys else [])
    if want.s3_refuses:
        # accel: the gateway's own Cache-Control survives X-Accel-Redirect (core nginx cannot drop
        # it); nginx adds `private, no-store`, which forbids any cache to keep the error.
        assert PRIVATE in via.headers["cache-control"]
        assert via.body == b"Forbidden\n"
        return
    cache_control = via.header("cache-control") or ""
    if want.cache_control == PUBLIC_SERVE:
        public = re.fullmatch(r"public, max-age=(\d+)", cache_control)
        assert public is not None, cache_control
        assert 0 < int(public.group(1)) <= PRESIGN_TTL
    else:
        assert cache_control == want.cache_control
    assert via.header("x-robots-tag") == ("noindex" if want.noindex else None)
    assert via.header("etag") == want.etag
    assert via.header("allow") == want.allow
    if want.status >= 400:  # no detail beyond the status
        assert via.body == f"{HTTPStatus(want.status).phrase}\n".encode()
    if want.served is None:
        return
    record = want.served
    assert via.body == (through.objects[record["id"]] if case.method == "GET" else b"")
    assert via.header("content-type") == record.get("content_type", "application/pdf")
    assert re.fullmatch(disposition(record["filename"]), via.header("content-disposition") or ""), via.headers
    assert via.header("x-frame-options") == "DENY"
    assert via.header("x-content-type-options") == "nosniff"
    parent = record.get("parent_document_url")
    assert via.header("link") == (f'<{parent}>; rel="up"' if parent else None)
    if "last_modified" in record:
        modified = datetime.fromisoformat(record["last_modified"].replace("Z", "+00:00"))
        assert via.header("last-modified") == format_datetime(modified, usegmt=True)


def disposition(filename: str) -> str:
    """`inline; filename="..."; filename*=UTF-8''...` (RFC 6266): the quoted name may be an ASCII
    stand-in; the extended one, required when the name is not ASCII, is exact."""
    extended = re.escape(f"; filename*=UTF-8''{quote(filename, safe='')}")
    if filename.isascii():
        return f'inline; filename="{re.escape(filename)}"({extended})?'
    return f'inline; filename="[ -~]+"{extended}'


def served_etag(case: Case) -> str | None:
    """The ETag a served file carries: the record's, or on a legacy URL its legacy_etag if set."""
    path = case.path.split("?", 1)[0]
    if path.startswith(LEGACY_PREFIX):
        wanted = normalise_legacy_path(path)
        for record in case.records:
            if record.get("legacy_url_path") and normalise_legacy_path(record["legacy_url_path"]) == wanted:
                return record.get("legacy_etag", record.get("etag"))
        return None
    served = next((r for r in case.records if path.startswith(f"/media/{r['id']}/")), {})
    return served.get("etag")


_MAX_AGE = re.compile(r"max-age=(\d+)")


def assert_same_cache_control(via: str | None, direct: str | None) -> None:
    """The same Cache-Control, but for a max-age that may have counted down a second or two
    between the two requests (it is the shared presigned URL's remaining life)."""
    assert (via is None) == (direct is None), (via, direct)
    if via is None or direct is None:
        return
    assert _MAX_AGE.sub("max-age=N", via) == _MAX_AGE.sub("max-age=N", direct), (via, direct)
    ages = zip(_MAX_AGE.findall(via), _MAX_AGE.findall(direct), strict=True)
    assert all(abs(int(a) - int(b)) <= 2 for a, b in ages), (via, direct)


async def assert_same_answer(
    through: Through, direct: Answer, via: Answer, method: str, etag: str | None = None
) -> None:
    location = direct.header("location")
    if direct.status == 302 and location and location.startswith(through.relay.endpoint_url):
        await assert_served(through, direct, via, method, location, etag)
        return
    assert via.status == direct.status, (direct, via)
    carried = ("location", "etag", "x-robots-tag", "retry-after", "allow", "surrogate-key")
    for name in carried:
        assert via.header(name) == direct.header(name), name
    assert_same_cache_control(via.header("cache-control"), direct.header("cache-control"))
    assert ("set-cookie" in via.headers) == ("set-cookie" in direct.headers)
    if direct.status >= 400:
        assert via.body == direct.body


async def assert_served(
    through: Through, direct: Answer, via: Answer, method: str, location: str, etag: str | None
) -> None:
    """The gateway redirected to S3; through nginx the browser gets what S3 gives for that URL."""
    async with ClientSession() as plain, plain.request(method, location) as s3:
        s3_status, s3_body = s3.status, await s3.read()
    if s3_status in (403, 404):  # a missing key: S3 says 403 unless the reader may list the bucket
        assert (via.status, via.body) == (s3_status, {403: b"Forbidden\n", 404: b"Not Found\n"}[s3_status])
        # accel: the gateway's Cache-Control survives X-Accel-Redirect and cannot be removed in core
        # nginx; the added no-store still forbids any cache to keep the error.
        assert "private, no-store" in via.headers["cache-control"]
        return
    assert s3_status == 200
    assert via.status == 200, via
    assert via.body == s3_body
    if method == "GET":
        assert int(via.header("content-length") or -1) == len(s3_body)
    for name in ("x-robots-tag", "surrogate-key"):
        assert via.header(name) == direct.header(name), name
    assert_same_cache_control(via.header("cache-control"), direct.header("cache-control"))
    assert via.header("etag") == etag  # the record's, not S3's (the redirect itself carries none)
    signed = parse_qs(urlsplit(location).query)
    assert via.header("content-type") == signed["response-content-type"][0]
    assert via.header("content-disposition") == signed["response-content-disposition"][0]
    assert via.header("x-frame-options") == "DENY"
    assert via.header("x-content-type-options") == "nosniff"


def assert_nothing_leaked(through: Through, via: Answer, headers: dict[str, str]) -> None:
    """No S3 header, no S3 server name, and the request carried an id."""
    for name in via.headers:
        assert not name.startswith(("x-amz", "access-control-")), name
    assert via.header("server") == "nginx"
    assert via.header("x-request-id")
    assert "x-asset-location" not in via.headers and "x-accel-redirect" not in via.headers
    everything = through.relay.everything()
    for value in headers.values():
        for token in _tokens_in(value):
            assert token.encode() not in everything


def _tokens_in(value: str) -> list[str]:
    parts = value.replace("Bearer ", "").replace(";", " ").split()
    return [part.split("=", 1)[-1] for part in parts if len(part) > 40]


def _cookie(answer: Answer) -> Any:
    jar: SimpleCookie = SimpleCookie()
    jar.load(answer.header("set-cookie") or "")
    return jar["auth_bypass_token"]


# ---- forwarded headers: a browser never steers an absolute URL we build (defect 3, DESIGN 2.6 step 3)

STEERING = [
    {"X-Forwarded-Host": "evil:6666"},
    {"X-Forwarded-Host": f"{LIVE}:6666"},
    {"X-Forwarded-Host": "evil:6666", "X-Forwarded-Proto": "https", "X-Forwarded-For": "10.9.9.9"},
    {"Forwarded": "host=evil:6666;proto=https"},
]


@pytest.mark.parametrize("steering", STEERING, ids=lambda h: "+".join(f"{k}={v}" for k, v in h.items()))
async def test_browser_forwarded_headers_never_reach_a_location(
    through: Through, steering: dict[str, str]
) -> None:
    await through.put(id="old1", filename="a.pdf", replacement_id="new1")
    await through.put(id="new1", filename="b.pdf")
    await through.put(id="dr1", filename="d.pdf", draft=True)
    expected = {
        # replacement 301, public and cacheable: the cache-poisoning case
        ("/media/old1/a.pdf", LIVE): f"http://{LIVE}/media/new1/b.pdf",
        ("/media/old1/a.pdf", f"{LIVE}:6666"): f"http://{LIVE}/media/new1/b.pdf",
        # a draft on the live host goes to the draft host
        ("/media/dr1/d.pdf", LIVE): f"http://{DRAFT}/media/dr1/d.pdf",
    }
    for (path, host), location in expected.items():
        answer = await through.via_nginx(path, host=host, **steering)
        assert answer.header("location") == location, (path, host)
    login = await through.via_nginx("/media/dr1/d.pdf", host=DRAFT, **steering)
    back = parse_qs(urlsplit(login.header("location") or "").query)["return_to"]
    assert back == [f"http://{DRAFT}/media/dr1/d.pdf"]


async def test_forwarded_host_from_a_trusted_peer_still_names_only_configured_hosts(through: Through) -> None:
    """Directly, from an address in trusted_proxies (as nginx is): an unknown forwarded host gets
    a bare 404, a configured one keeps its configured port whatever port is forwarded."""
    await through.put(id="old1", filename="a.pdf", replacement_id="new1")
    await through.put(id="new1", filename="b.pdf")
    evil = await through.direct("/media/old1/a.pdf", **{"X-Forwarded-Host": "evil:6666"})
    assert evil.status == 404 and evil.header("location") is None
    ported = await through.direct("/media/old1/a.pdf", **{"X-Forwarded-Host": f"{LIVE}:6666"})
    assert ported.status == 301
    assert ported.header("location") == f"http://{LIVE}/media/new1/b.pdf"
