"""Legacy Whitehall URLs (DESIGN 2.8) over real HTTP: gateway → real Redis → moto's S3 server.
A legacy URL answers exactly as its /media URL would, plus the legacy rules; the admin API keeps
paths unique among live records; caches never serve a path that moved."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
import redis

from gateway.state.factory import open_store
from tests.http.conftest import DRAFT, LIVE, Admin, Keys, RunningGateway, body
from tests.http.test_public import fetch_presigned
from tests.waiting import until

pytestmark = pytest.mark.asyncio

LEGACY = "/government/uploads/system/uploads/attachment_data/file/{n}/spring-budget.pdf"
PLACEHOLDER = "/government/placeholder"
IMAGE_PLACEHOLDER = "/asset-manager/thumbnail-placeholder-image.png"


async def put_legacy(running: RunningGateway, n: int, **fields: Any) -> tuple[str, str]:
    """A record with a legacy path; returns (its /media path, its legacy path)."""
    legacy = LEGACY.format(n=n)
    fields.setdefault("filename", "spring-budget-2014.pdf")  # the name in the path is another one
    record = await running.put(legacy_url_path=legacy, **fields)
    running.gateway.store.invalidate(legacy)
    return f"/media/{record.id}/{quote(record.filename)}", legacy


def answer(response: Any) -> tuple[int, str | None, str | None]:
    return response.status, response.headers.get("Location"), response.headers.get("Cache-Control")


SAME_AS_MEDIA = {
    "public": ({}, {}),
    "head": ({}, {"method": "HEAD"}),
    "deleted": ({"deleted": True}, {}),
    "draft_on_live_host": ({"draft": True}, {}),
    "draft_host_anonymous_login": ({"draft": True}, {"host": DRAFT}),
    "draft_host_preview_listed": (
        {"draft": True, "auth_bypass_ids": ["bp-1"]},
        {"host": DRAFT, "preview": "bp-1"},
    ),
    "draft_host_preview_not_listed": (
        {"draft": True, "auth_bypass_ids": ["bp-1"]},
        {"host": DRAFT, "preview": "x"},
    ),
    "draft_host_user": ({"draft": True}, {"host": DRAFT, "user": "editor-1"}),
    "limited_anonymous": ({"access_limited": {"users": ["u1"]}}, {}),
    "limited_listed_user": ({"access_limited": {"users": ["u1"]}}, {"user": "u1"}),
    "limited_other_user": ({"access_limited": {"users": ["u1"]}}, {"user": "u2"}),
    "redirect_url": ({"redirect_url": "https://www.example.org/new-home"}, {}),
    "etag_matches": ({"etag": '"e1"'}, {"if_none_match": '"e1"'}),
    "unknown_host": ({}, {"host": "elsewhere.test"}),
}


@pytest.mark.parametrize("case", list(SAME_AS_MEDIA))
async def test_a_legacy_url_answers_as_its_media_url(running: RunningGateway, keys: Keys, case: str) -> None:
    fields, request = SAME_AS_MEDIA[case]
    media, legacy = await put_legacy(running, 1, id="lg1", **fields)
    headers: dict[str, str] = {}
    if "preview" in request:
        headers["Cookie"] = f"gateway_preview={keys.preview_token(request['preview'])}"
    if "user" in request:
        headers["Authorization"] = f"Bearer {keys.user_token(request['user'])}"
    if "if_none_match" in request:
        headers["If-None-Match"] = request["if_none_match"]
    host, method = request.get("host", LIVE), request.get("method", "GET")
    via_media = answer(await running.get(media + "?x=1", host=host, method=method, **headers))
    via_legacy = answer(await running.get(legacy + "?x=1", host=host, method=method, **headers))
    status, location, cache = via_media
    if location is not None:  # a redirect to the URL itself (draft host, login) names the legacy one
        location = location.replace(media, legacy).replace(quote(media, safe=""), quote(legacy, safe=""))
    assert via_legacy == (status, location, cache)


async def test_a_served_legacy_url_delivers_the_bytes(running: RunningGateway) -> None:
    await put_legacy(running, 2, id="lg2")
    response = await running.get(LEGACY.format(n=2))
    assert response.status == 302
    status, content, headers = await fetch_presigned(response.headers["Location"])
    assert (status, content) == (200, running.objects["lg2"])
    assert "spring-budget-2014.pdf" in headers["Content-Disposition"]


async def test_a_replaced_legacy_file_redirects_to_the_replacements_media_url(
    running: RunningGateway,
) -> None:
    await running.put(id="new3", filename="budget-v2.pdf")
    await put_legacy(running, 3, id="lg3", replacement_id="new3")
    response = await running.get(LEGACY.format(n=3))
    assert answer(response) == (301, f"http://{LIVE}/media/new3/budget-v2.pdf", "public, max-age=1800")


@pytest.mark.parametrize(
    ("state", "name", "target"),
    [("unscanned", "report.pdf", PLACEHOLDER), ("clean", "report.pdf", PLACEHOLDER),
     ("clean", "chart.png", IMAGE_PLACEHOLDER), ("unscanned", "photo.JPG", IMAGE_PLACEHOLDER),
     ("clean", "anim.gif", IMAGE_PLACEHOLDER), ("unscanned", "pic.jpeg", IMAGE_PLACEHOLDER)],
)  # fmt: skip
async def test_files_not_yet_cleared_send_legacy_urls_to_a_placeholder(
    running: RunningGateway, state: str, name: str, target: str
) -> None:
    path = f"/government/uploads/placeholder-test/{name}"
    await running.put(id="ph1", state=state, legacy_url_path=path)
    response = await running.get(path)
    assert answer(response) == (302, f"http://{LIVE}{target}", "public, max-age=60")
    assert response.headers["Surrogate-Key"] == "asset-ph1"  # purged with the asset (DESIGN 2.9)
    assert (await running.get("/media/ph1/file.pdf")).status == 404  # /media keeps its own rule


async def test_a_limited_files_placeholder_is_not_publicly_cacheable(
    running: RunningGateway, keys: Keys
) -> None:
    path = "/government/uploads/limited/report.pdf"
    await running.put(id="ph2", state="clean", legacy_url_path=path, access_limited={"users": ["u1"]})
    response = await running.get(path, Authorization=f"Bearer {keys.user_token('u1')}")
    assert answer(response) == (302, f"http://{LIVE}{PLACEHOLDER}", "private, no-store")
    assert (await running.get(path)).status == 404  # not admitted: nothing is revealed


async def test_infected_no_extension_and_unknown_paths_are_404(running: RunningGateway) -> None:
    await running.put(id="inf1", state="infected", legacy_url_path="/government/uploads/x/virus.pdf")
    await running.put(id="noext", legacy_url_path="/government/uploads/x/README")
    for name in ("virus.pdf", "README", "none.pdf", "%zz.pdf", "", "../x/virus.pdf", "virus.pdf/"):
        path = "/government/uploads/x/" + name
        response = await running.get(path)
        assert (response.status, response.headers["Cache-Control"]) == (404, "private, no-store"), path
        assert await response.text() == "Not Found\n"


async def test_legacy_validators_replace_the_current_ones(running: RunningGateway) -> None:
    await put_legacy(running, 4, id="lg4", etag='"s3-2"', legacy_etag='"nfs-1"')
    legacy = LEGACY.format(n=4)
    not_modified = await running.get(legacy, **{"If-None-Match": '"nfs-1"'})
    assert (not_modified.status, not_modified.headers["ETag"]) == (304, '"nfs-1"')
    assert (await running.get(legacy, **{"If-None-Match": '"s3-2"'})).status == 302
    assert (
        await running.get("/media/lg4/spring-budget-2014.pdf", **{"If-None-Match": '"s3-2"'})
    ).status == 304


@pytest.mark.parametrize(
    "spelling",
    ["/government/uploads/docs/caf%C3%A9%20men%C3%BC.pdf",
     "/government/uploads/docs/caf%c3%a9%20men%c3%bc.pdf",
     "/government/uploads/%64ocs/%63af%C3%A9%20men%C3%BC.pdf"],
)  # fmt: skip
async def test_non_ascii_names_are_found_however_they_are_spelled(
    running: RunningGateway, spelling: str
) -> None:
    record = await running.put(id="na1", legacy_url_path="/government/uploads/docs/café menü.pdf")
    assert record.legacy_url_path == "/government/uploads/docs/caf%C3%A9%20men%C3%BC.pdf"
    running.gateway.store.invalidate(record.legacy_url_path)
    response = await running.get(spelling)
    assert response.status == 302
    assert (await fetch_presigned(response.headers["Location"]))[1] == running.objects["na1"]


async def test_reserved_characters_and_encoded_slashes_are_kept_apart(running: RunningGateway) -> None:
    await running.put(id="rs1", legacy_url_path="/government/uploads/a%2Fb/c.pdf")  # one segment "a/b"
    assert (await running.get("/government/uploads/a%2fb/c.pdf")).status == 302
    assert (await running.get("/government/uploads/a/b/c.pdf")).status == 404


async def test_the_access_log_and_metrics_name_the_route(
    running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    await put_legacy(running, 5, id="lg5")
    caplog.set_level(logging.INFO, logger="gateway.access")
    await running.get(LEGACY.format(n=5))
    await running.get("/media/lg5/spring-budget-2014.pdf")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    assert [(line["route"], line["asset_id"], line["status"]) for line in lines] == [
        ("legacy", "lg5", 302),
        ("media", "lg5", 302),
    ]
    assert ("legacy", "serve", "serve", "302") in running.gateway.metrics.counts.requests


# ---- the admin API keeps legacy paths unique among live records


async def test_a_path_held_by_a_live_record_is_409(admin: Admin) -> None:
    path = "/government/uploads/file/7/taken.pdf"
    assert (await admin.call("PUT", "own1", body("own1", legacy_url_path=path)))[0] == 201
    status, answer_, _ = await admin.call(
        "PUT", "own2", body("own2", legacy_url_path="/government/uploads/file/7/tak%65n.pdf")
    )
    assert (status, answer_) == (409, {"error": "legacy_path_taken", "asset_id": "own1"})
    assert await admin.stored("own2") is None
    # PATCH onto a held path is refused the same way, and changes nothing.
    assert (await admin.call("PUT", "own3", body("own3")))[0] == 201
    status, answer_, _ = await admin.call("PATCH", "own3", {"version": 2, "legacy_url_path": path})
    assert (status, answer_) == (409, {"error": "legacy_path_taken", "asset_id": "own1"})
    assert (await admin.stored("own3") or {})["version"] == 1


async def test_racing_writers_of_one_path_exactly_one_wins(admin: Admin) -> None:
    path = "/government/uploads/file/8/race.pdf"
    answers = await asyncio.gather(
        *(admin.call("PUT", f"race{n}", body(f"race{n}", legacy_url_path=path)) for n in range(6))
    )
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [201, 409, 409, 409, 409, 409]
    winner = next(f"race{n}" for n, (status, _, _) in enumerate(answers) if status == 201)
    assert {a["asset_id"] for status, a, _ in answers if status == 409} == {winner}
    response = await admin.public.get(path)
    assert response.status == 302 and "objects/" + winner in response.headers["Location"]


async def test_a_deleted_records_path_is_410_until_another_record_takes_it(admin: Admin) -> None:
    path = "/government/uploads/file/9/old.pdf"
    public = admin.public
    await admin.call("PUT", "del1", body("del1", legacy_url_path=path))
    public.s3.client().put_object(Bucket=public.s3.bucket, Key="objects/del1", Body=b"first")
    public.s3.client().put_object(Bucket=public.s3.bucket, Key="objects/del2", Body=b"second")
    assert (await public.get(path)).status == 302
    assert (await admin.call("DELETE", "del1", version="2"))[0] == 200
    assert (await public.get(path)).status == 410  # the write reached the gateway's cache at once
    assert (await admin.call("PUT", "del2", body("del2", legacy_url_path=path)))[0] == 201
    response = await public.get(path)
    assert response.status == 302
    assert (await fetch_presigned(response.headers["Location"]))[1] == b"second"
    assert (await public.get("/media/del1/file.pdf")).status == 410
    # The deleted record cannot come back on the path while del2 holds it.
    status, answer_, _ = await admin.call("PUT", "del1", body("del1", 3, legacy_url_path=path))
    assert (status, answer_) == (409, {"error": "legacy_path_taken", "asset_id": "del2"})


async def test_a_path_moved_by_another_writer_is_not_served_stale(running: RunningGateway) -> None:
    """Writes from elsewhere reach this gateway's cache by pub/sub: the old path, the new path and
    a path another record takes are all forgotten."""
    await asyncio.wait_for(running.gateway.invalidations.subscribed.wait(), 5)
    elsewhere = open_store(running.gateway.settings.state.url.reveal())
    old, new = LEGACY.format(n=10), LEGACY.format(n=11)
    await put_legacy(running, 10, id="mv1")
    assert (await running.get(old)).status == 302  # cached now, and the new path's absence too
    assert (await running.get(new)).status == 404
    stored = await elsewhere.get("mv1")
    assert stored is not None
    assert (await elsewhere.put(replace(stored, version=2, legacy_url_path=new))).applied
    await until_status(running, old, 404)
    await until_status(running, new, 302)
    await running.put(id="mv2", legacy_url_path=old)  # taken by another record, written elsewhere
    await until_status(running, old, 302)
    assert "objects/mv2" in (await running.get(old)).headers["Location"]
    await elsewhere.close()


async def until_status(running: RunningGateway, path: str, status: int) -> None:
    async def answered() -> bool:
        return (await running.get(path)).status == status

    await until(answered, within=5.0, what=f"{path} answers {status}")


@pytest.mark.parametrize("how", ["string", "not_json"])
async def test_an_unreadable_record_behind_a_legacy_path_is_503_for_that_path_only(
    running: RunningGateway, redis_url: str, how: str
) -> None:
    await put_legacy(running, 20, id="bad20")
    await put_legacy(running, 21, id="ok21")
    client = redis.Redis.from_url(redis_url)
    if how == "string":
        client.delete("asset:{bad20}")
        client.set("asset:{bad20}", "garbage")
    else:
        client.hset("asset:{bad20}", "record", "not json")
    client.close()
    running.gateway.store.clear()
    broken = await running.get(LEGACY.format(n=20))
    assert (broken.status, broken.headers["Cache-Control"]) == (503, "private, no-store")
    assert "Retry-After" in broken.headers and await broken.text() == "Service Unavailable\n"
    assert (await running.get(LEGACY.format(n=21))).status == 302
