"""Every answer of the publisher API (DESIGN 2.5) over real HTTP, against a real redis-server, with
the public listener of the same gateway showing that accepted writes take effect at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from aiohttp import ClientSession, web

from gateway.app import build_gateway, create_admin_app, create_public_app
from gateway.http.admin import MAX_BODY_BYTES
from gateway.http.assets_api import MERGE_ATTEMPTS, merge_patch
from gateway.http.runner import GatewayRunner
from gateway.models import AssetRecord
from gateway.observability import JsonFormatter
from gateway.presign import Presigner, credentials_from_chain
from gateway.records import record_from_dict, record_to_dict
from gateway.settings import Secret, Settings
from gateway.state.factory import open_store
from gateway.state.packed import unpack
from gateway.state.redis import RedisAssetStore, asset_key
from tests.http.conftest import (
    ADMIN_TOKEN,
    DRAFT,
    LIVE,
    Admin,
    Keys,
    RunningGateway,
    body,
    gateway_settings,
)
from tests.servers import RedisServer, S3Server, free_port
from tests.waiting import until


@contextlib.asynccontextmanager
async def serving_admin(settings: Settings, s3: S3Server, backend: RedisAssetStore) -> AsyncIterator[Admin]:
    """Both listeners of one gateway with these settings on `backend`, subscribed to invalidations
    (the `admin` fixture's, with an admin token, is the usual one)."""
    gateway = build_gateway(
        settings, store=backend, presigner=Presigner(settings.s3, credentials_from_chain(s3.region))
    )
    runner = GatewayRunner(create_public_app(gateway))
    admin_runner = GatewayRunner(create_admin_app(gateway))
    await runner.setup()
    await admin_runner.setup()
    port, admin_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await web.TCPSite(admin_runner, "127.0.0.1", admin_port).start()
    try:
        await asyncio.wait_for(gateway.invalidations.subscribed.wait(), 5)
        async with ClientSession() as session:
            public = RunningGateway(f"http://127.0.0.1:{port}", gateway, backend, s3, session)
            yield Admin(f"http://127.0.0.1:{admin_port}", session, public)
    finally:
        await admin_runner.cleanup()
        await runner.cleanup()


def redis_backend(redis_url: str) -> RedisAssetStore:
    backend = open_store(redis_url)
    assert isinstance(backend, RedisAssetStore)
    return backend


# ---- PUT and GET


async def test_put_creates_then_replaces_and_get_returns_the_stored_record(admin: Admin) -> None:
    status, created, response = await admin.call("PUT", "pub1", body("pub1", 1, draft=True))
    assert status == 201
    assert response.headers["Location"] == "/assets/pub1"
    assert response.headers["Cache-Control"] == "no-store"
    assert record_from_dict(created) == record_from_dict(body("pub1", 1, draft=True))
    assert created["access_limited"] == {"users": [], "organisations": [], "groups": []}  # every field

    again = await admin.call("PUT", "pub1", body("pub1", 1, draft=True))  # a retry: same record
    assert again[:2] == (200, created)

    status, replaced, _ = await admin.call("PUT", "pub1", body("pub1", 2, filename="new.pdf"))
    assert status == 200
    assert replaced["filename"] == "new.pdf"
    assert await admin.stored("pub1") == replaced


async def test_put_fills_the_id_from_the_path(admin: Admin) -> None:
    payload = body("ignored")
    del payload["id"]
    status, answer, _ = await admin.call("PUT", "fromPath_1", payload)
    assert status == 201
    assert answer["id"] == "fromPath_1"


@pytest.mark.parametrize("stale", [3, 2])
async def test_stale_put_is_409_with_the_current_version_and_changes_nothing(
    admin: Admin, stale: int
) -> None:
    await admin.call("PUT", "st1", body("st1", 3, filename="kept.pdf"))
    status, answer, response = await admin.call("PUT", "st1", body("st1", stale, filename="lost.pdf"))
    assert status == 409
    assert answer == {"error": "stale_version", "current_version": 3}
    assert response.headers["Cache-Control"] == "no-store"
    assert (await admin.stored("st1") or {})["filename"] == "kept.pdf"


async def test_invalid_put_names_every_bad_field_and_changes_nothing(admin: Admin) -> None:
    await admin.call("PUT", "inv1", body("inv1", 1))
    bad = {
        "id": "other-id", "version": "2", "filename": "a/b.pdf", "state": "published",
        "redirect_url": "ftp://example.org/x", "access_limited": {"users": [1], "teams": []},
        "auth_bypass_ids": "bypass", "size": -1, "colour": "blue",
    }  # fmt: skip
    status, answer, _ = await admin.call("PUT", "inv1", bad)
    assert status == 422
    assert answer["error"] == "invalid"
    fields = {d["field"] for d in answer["details"]}
    assert fields == {
        "id", "version", "object_key", "filename", "state", "redirect_url", "access_limited.users",
        "access_limited.teams", "auth_bypass_ids", "size", "colour",
    }  # fmt: skip
    assert all(d["message"] for d in answer["details"])
    assert "ftp://" not in json.dumps(answer)  # no input echoed back
    assert (await admin.stored("inv1") or {})["version"] == 1


async def test_invalid_path_id_is_422(admin: Admin) -> None:
    status, answer, _ = await admin.call("PUT", "x" * 65, body("x" * 65))
    assert status == 422
    assert [d["field"] for d in answer["details"]] == ["id"]


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'"a string"', b"", b"\xff\xfe", b"[" * 100_000], ids=repr
)
async def test_malformed_json_is_400_and_changes_nothing(admin: Admin, raw: bytes) -> None:
    status, answer, _ = await admin.call("PUT", "mal1", raw=raw)
    assert (status, answer) == (400, {"error": "malformed_json"})
    status, answer, _ = await admin.call("PATCH", "mal1", raw=raw)
    assert (status, answer) == (400, {"error": "malformed_json"})
    assert await admin.stored("mal1") is None


async def test_oversized_body_is_413_and_changes_nothing(admin: Admin) -> None:
    payload = body("big1", 1, filename_history=["x" * 1000] * 300)
    raw = json.dumps(payload).encode()
    assert len(raw) > MAX_BODY_BYTES
    status, answer, _ = await admin.call("PUT", "big1", raw=raw)
    assert status == 413
    assert answer == {"error": "too_large", "max_bytes": MAX_BODY_BYTES}
    assert await admin.stored("big1") is None


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        f"Basic {ADMIN_TOKEN}",
        f"Token {ADMIN_TOKEN}",  # the right token under any scheme but Bearer is refused
        f"Digest {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN}x",
        "Bearer ",
    ],
    ids=["none", "wrong-bearer", "basic", "token-scheme", "digest-scheme", "longer-token", "empty-bearer"],
)
async def test_missing_or_wrong_token_is_401_and_changes_nothing(
    admin: Admin, authorization: str | None
) -> None:
    await admin.call("PUT", "auth1", body("auth1", 1, draft=True))
    headers = {} if authorization is None else {"Authorization": authorization}
    attempts = [
        ("PUT", body("auth1", 5, draft=False), {}),
        ("PATCH", {"version": 5, "draft": False}, {}),
        ("DELETE", None, {"version": "5"}),
        ("GET", None, {}),
        ("PUT", body("auth2", 1), {}),
    ]
    for method, payload, params in attempts:
        asset_id = "auth2" if payload and payload.get("id") == "auth2" else "auth1"
        status, answer, response = await admin.call(
            method, asset_id, payload, token=None, headers=headers, **params
        )
        assert (status, answer) == (401, {"error": "unauthorized"}), method
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    stored = await admin.stored("auth1")
    assert stored is not None
    assert (stored["version"], stored["draft"], stored["deleted"]) == (1, True, False)
    assert await admin.stored("auth2") is None


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer ", "Bearer anything", f"Bearer {ADMIN_TOKEN}"]
)
async def test_no_admin_token_configured_every_admin_request_is_401_and_changes_nothing(
    redis_url: str,
    s3_server: S3Server,
    keys: Keys,
    authorization: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deny by default: an unset admin.token is not a token that an empty bearer matches."""
    settings = gateway_settings(redis_url, s3_server, keys)
    assert not settings.admin.token
    caplog.set_level(logging.WARNING, logger="gateway.http.admin")
    async with serving_admin(settings, s3_server, redis_backend(redis_url)) as admin:
        warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.http.admin"]
        assert warnings == ["admin.token is not set: every admin request except health and metrics gets 401"]
        await admin.public.put(id="open1", filename="file.pdf", draft=True)
        headers = {} if authorization is None else {"Authorization": authorization}
        attempts = [
            ("PUT", "open1", body("open1", 5), {}),
            ("PUT", "open2", body("open2", 1), {}),
            ("PATCH", "open1", {"version": 5, "draft": False}, {}),
            ("DELETE", "open1", None, {"version": "5"}),
            ("GET", "open1", None, {}),
        ]
        for method, asset_id, payload, params in attempts:
            status, answer, _ = await admin.call(
                method, asset_id, payload, token=None, headers=headers, **params
            )
            assert (status, answer) == (401, {"error": "unauthorized"}), method
        stored = await admin.public.backend.get("open1")
        assert stored is not None and (stored.version, stored.draft, stored.deleted) == (1, True, False)
        assert await admin.public.backend.get("open2") is None


async def test_a_method_the_route_lacks_is_405_naming_the_allowed_ones(admin: Admin) -> None:
    status, answer, response = await admin.call("POST", "m1", body("m1"))
    assert (status, answer) == (405, {"error": "method_not_allowed"})
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "PUT", "PATCH", "DELETE"}
    assert response.headers["Cache-Control"] == "no-store"
    assert await admin.stored("m1") is None


async def test_unknown_ids_are_404(admin: Admin) -> None:
    assert (await admin.call("GET", "nosuch"))[:2] == (404, {"error": "not_found"})
    assert (await admin.call("GET", "bad id!"))[:2] == (404, {"error": "not_found"})
    assert (await admin.call("PATCH", "nosuch", {"version": 2}))[:2] == (404, {"error": "not_found"})
    assert (await admin.call("DELETE", "nosuch", version="2"))[:2] == (404, {"error": "not_found"})
    assert await admin.stored("nosuch") is None


async def test_a_configured_admin_token_is_not_warned_about(
    redis_url: str, s3_server: S3Server, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.http.admin")
    settings = gateway_settings(redis_url, s3_server, keys, admin={"token": Secret(ADMIN_TOKEN)})
    async with serving_admin(settings, s3_server, redis_backend(redis_url)):
        assert [r for r in caplog.records if r.name == "gateway.http.admin"] == []


async def test_get_reads_redis_not_this_process_cache(admin: Admin, redis_url: str) -> None:
    """A record changed in Redis behind the cache's back (no invalidation published): the public
    listener still answers from its cache, the admin GET answers what Redis holds."""
    invalidations = admin.public.gateway.invalidations
    announced = invalidations.received
    await admin.call("PUT", "rd1", body("rd1", 1, filename="one.pdf"))
    # The PUT's own invalidation arrives through Redis; once heard it cannot empty the cache below.
    await until(lambda: invalidations.received > announced, what="the PUT's invalidation")
    assert (await admin.public.get("/media/rd1/one.pdf")).status == 302
    cached = admin.public.gateway.store.peek("rd1")
    assert isinstance(cached, bytes) and unpack(cached, "rd1").version == 1
    behind = record_from_dict(body("rd1", 2, filename="two.pdf"))
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.hset(asset_key("rd1"), mapping={"version": "2", "record": json.dumps(record_to_dict(behind))})
    finally:
        raw.close()
    assert admin.public.gateway.store.peek("rd1") is cached  # the cache still holds version 1
    status, answer, _ = await admin.call("GET", "rd1")
    assert (status, answer["version"], answer["filename"]) == (200, 2, "two.pdf")


async def test_every_write_attempt_leaves_one_audit_line_without_the_token(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.admin")
    assert (await admin.call("PUT", "aud1", body("aud1", 1)))[0] == 201
    assert (await admin.call("PUT", "aud1", body("aud1", 1)))[0] == 200  # a retry: unchanged
    assert (await admin.call("PATCH", "aud1", {"version": 1, "draft": True}))[0] == 409
    assert (await admin.call("DELETE", "aud1", version="3"))[0] == 200
    assert (await admin.call("PUT", "aud1", {"version": 9}))[0] == 422  # invalid: never reached the store
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.getMessage() == "asset_write"]
    assert all(ADMIN_TOKEN not in line for line in lines)
    keys = (
        "event",
        "result",
        "method",
        "asset_id",
        "version",
        "applied",
        "unchanged",
        "current_version",
        "remote",
    )
    entries = [tuple(json.loads(line).get(key) for key in keys) for line in lines]
    assert entries == [
        ("asset_write", "applied", "PUT", "aud1", 1, True, False, 1, "127.0.0.1"),
        ("asset_write", "unchanged", "PUT", "aud1", 1, False, True, 1, "127.0.0.1"),
        ("asset_write", "stale", "PATCH", "aud1", 1, False, False, 1, "127.0.0.1"),
        ("asset_write", "applied", "DELETE", "aud1", 3, True, False, 3, "127.0.0.1"),
    ]


# ---- PATCH


async def test_patch_merges_onto_the_stored_record(admin: Admin) -> None:
    await admin.call(
        "PUT", "pat1",
        body("pat1", 1, draft=True, redirect_url="https://example.org/old",
             access_limited={"users": ["u1"], "organisations": ["o1"], "groups": []}),
    )  # fmt: skip
    patch = {"version": 2, "draft": False, "redirect_url": None, "access_limited": {"users": ["u2"]}}
    status, answer, _ = await admin.call("PATCH", "pat1", patch)
    assert status == 200
    assert answer["draft"] is False
    assert answer["redirect_url"] is None  # null resets to the default
    assert answer["access_limited"] == {"users": ["u2"], "organisations": ["o1"], "groups": []}
    assert answer["filename"] == "file.pdf"  # untouched fields are kept
    assert await admin.stored("pat1") == answer


async def test_patch_rules(admin: Admin) -> None:
    await admin.call("PUT", "pat2", body("pat2", 4))
    status, answer, _ = await admin.call("PATCH", "pat2", {"draft": True})
    assert status == 422
    assert [d["field"] for d in answer["details"]] == ["version"]
    status, answer, _ = await admin.call("PATCH", "pat2", {"version": 4, "draft": True})
    assert (status, answer) == (409, {"error": "stale_version", "current_version": 4})
    status, answer, _ = await admin.call("PATCH", "pat2", {"version": 5, "state": "nope", "size": "big"})
    assert status == 422
    assert {d["field"] for d in answer["details"]} == {"state", "size"}
    status, answer, _ = await admin.call("PATCH", "pat2", {"version": 5, "id": "other"})
    assert status == 422
    assert [d["field"] for d in answer["details"]] == ["id"]
    assert (await admin.stored("pat2") or {})["version"] == 4


async def test_concurrent_patches_never_lose_an_accepted_change(admin: Admin) -> None:
    """Two PATCHes racing on the same record: if both are accepted, the newer one was applied on
    top of the older one (the store's base-version check made it re-read), never beside it."""
    ids = [f"race{n}" for n in range(20)]
    for asset_id in ids:
        await admin.call("PUT", asset_id, body(asset_id, 1))

    async def race(asset_id: str) -> tuple[int, int]:
        (first, _, _), (second, _, _) = await asyncio.gather(
            admin.call("PATCH", asset_id, {"version": 2, "draft": True}),
            admin.call("PATCH", asset_id, {"version": 3, "filename": "three.pdf"}),
        )
        return first, second

    outcomes = await asyncio.gather(*(race(asset_id) for asset_id in ids))
    for asset_id, (first, second) in zip(ids, outcomes, strict=True):
        stored = await admin.stored(asset_id)
        assert stored is not None
        assert second == 200 and stored["version"] == 3 and stored["filename"] == "three.pdf"
        assert first in (200, 409)
        if first == 200:  # v2 landed before v3 was written, so v3 carries its change too
            assert stored["draft"] is True


class RacedStore(RedisAssetStore):
    """A real Redis store where another publisher writes a newer version of `raced` (through its own
    connection) right after each of this store's reads of it, `races` times: the window a
    read-modify-write must survive, made to happen on demand instead of by chance."""

    def __init__(self, redis_url: str, raced: str, races: int) -> None:
        super().__init__(redis_backend(redis_url).client)
        self.rival = redis_backend(redis_url)
        self.raced = raced
        self.races_left = races
        self.rival_versions: list[int] = []

    async def get(self, asset_id: str) -> AssetRecord | None:
        record = await super().get(asset_id)
        if asset_id == self.raced and record is not None and self.races_left > 0:
            self.races_left -= 1
            version = record.version + 1
            rival = record_from_dict(body(asset_id, version, filename=f"rival-{version}.pdf"))
            assert (await self.rival.put(rival)).applied
            self.rival_versions.append(version)
        return record

    async def close(self) -> None:
        await self.rival.close()
        await super().close()


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_write_raced_a_few_times_is_reapplied_on_the_fresh_record(
    redis_url: str, s3_server: S3Server, keys: Keys, method: str
) -> None:
    races = MERGE_ATTEMPTS - 1
    store = RacedStore(redis_url, "race1", races)
    settings = gateway_settings(redis_url, s3_server, keys, admin={"token": Secret(ADMIN_TOKEN)})
    async with serving_admin(settings, s3_server, store) as admin:
        await admin.public.put(id="race1", filename="mine.pdf")
        if method == "PATCH":
            status, answer, _ = await admin.call("PATCH", "race1", {"version": 50, "draft": True})
        else:
            status, answer, _ = await admin.call("DELETE", "race1", version="50")
        assert status == 200
        assert len(store.rival_versions) == races
        stored = await admin.stored("race1")
    # the change lands on top of the rival's last write, which is not lost
    last = store.rival_versions[-1]
    assert stored == answer
    assert (stored["version"], stored["filename"]) == (50, f"rival-{last}.pdf")
    assert stored["draft" if method == "PATCH" else "deleted"] is True


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_write_raced_on_every_attempt_is_409_conflict_and_changes_nothing_itself(
    redis_url: str, s3_server: S3Server, keys: Keys, method: str
) -> None:
    store = RacedStore(redis_url, "race2", races=MERGE_ATTEMPTS + 10)
    settings = gateway_settings(redis_url, s3_server, keys, admin={"token": Secret(ADMIN_TOKEN)})
    async with serving_admin(settings, s3_server, store) as admin:
        await admin.public.put(id="race2", filename="mine.pdf")
        if method == "PATCH":
            status, answer, _ = await admin.call("PATCH", "race2", {"version": 50, "draft": True})
        else:
            status, answer, _ = await admin.call("DELETE", "race2", version="50")
        assert len(store.rival_versions) == MERGE_ATTEMPTS  # tried that many times, then gave up
        last = store.rival_versions[-1]
        assert (status, answer) == (409, {"error": "conflict", "current_version": last})
        stored = await store.rival.get("race2")
    assert stored is not None
    assert (stored.version, stored.filename, stored.draft, stored.deleted) == (
        last,
        f"rival-{last}.pdf",
        False,
        False,
    )


# ---- DELETE


async def test_delete_is_a_new_version_marked_deleted(admin: Admin) -> None:
    await admin.call("PUT", "del1", body("del1", 1))
    assert (await admin.public.get("/media/del1/file.pdf")).status == 302  # now cached
    status, answer, _ = await admin.call("DELETE", "del1", version="2")
    assert status == 200
    assert (answer["version"], answer["deleted"], answer["object_key"]) == (2, True, "objects/del1")
    assert (await admin.public.get("/media/del1/file.pdf")).status == 410
    assert (await admin.call("DELETE", "del1", version="2"))[:2] == (200, answer)  # repeated: done
    status, answer, _ = await admin.call("DELETE", "del1", version="1")
    assert (status, answer) == (409, {"error": "stale_version", "current_version": 2})


@pytest.mark.parametrize("version", [None, "", "two", "-1", "0", "1.5", str(2**63)])
async def test_delete_needs_a_valid_version(admin: Admin, version: str | None) -> None:
    await admin.call("PUT", "del2", body("del2", 1))
    params = {} if version is None else {"version": version}
    status, answer, _ = await admin.call("DELETE", "del2", **params)
    assert status == 422
    assert [d["field"] for d in answer["details"]] == ["version"]
    assert (await admin.stored("del2") or {})["deleted"] is False


# ---- concurrency and effect on the public listener


async def test_concurrent_writers_to_one_id_leave_the_highest_version(admin: Admin) -> None:
    versions = list(range(1, 41))
    random.Random(11).shuffle(versions)
    results = await asyncio.gather(
        *(admin.call("PUT", "hot1", body("hot1", v, filename=f"v{v}.pdf")) for v in versions)
    )
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 201, 409}
    assert statuses.count(201) == 1
    for (status, answer, _), version in zip(results, versions, strict=True):
        if status == 409:
            assert answer["current_version"] >= version
    stored = await admin.stored("hot1")
    assert stored is not None
    assert (stored["version"], stored["filename"]) == (40, "v40.pdf")


async def test_publishing_a_draft_takes_effect_at_once(admin: Admin) -> None:
    await admin.public.put(id="drf1", filename="plan.pdf", draft=True)
    before = await admin.public.get("/media/drf1/plan.pdf")
    assert before.status == 302
    assert before.headers["Location"].startswith(f"http://{DRAFT}/")  # cached: a draft
    status, _, _ = await admin.call("PATCH", "drf1", {"version": 2, "draft": False})
    assert status == 200
    after = await admin.public.get("/media/drf1/plan.pdf")
    assert after.status == 302
    assert after.headers["Location"].startswith(admin.public.s3.endpoint_url)


async def test_publishing_the_end_of_a_chain_redirects_its_start_at_once(admin: Admin) -> None:
    await admin.public.put(id="chainA", filename="a.pdf", replacement_id="chainB")
    await admin.public.put(id="chainB", filename="b.pdf", draft=True)
    assert (await admin.public.get("/media/chainA/a.pdf")).status == 302  # B not live: A served
    assert (await admin.call("PATCH", "chainB", {"version": 2, "draft": False}))[0] == 200
    response = await admin.public.get("/media/chainA/a.pdf")
    assert response.status == 301
    assert response.headers["Location"] == f"http://{LIVE}/media/chainB/b.pdf"


async def test_store_outage_is_503_then_recovers(admin: Admin, redis_server: RedisServer) -> None:
    redis_server.stop()
    try:
        status, answer, response = await admin.call("PUT", "down1", body("down1"))
        assert (status, answer) == (503, {"error": "store_unavailable"})
        assert response.headers["Retry-After"] == "1"
        assert (await admin.call("GET", "down1"))[:2] == (503, {"error": "store_unavailable"})
        async with admin.session.get(f"{admin.url}/readyz") as ready:
            assert ready.status == 503
            assert (await ready.json())["checks"]["state"] == "unreachable"
            # readyz builds its 503 without Cache-Control: only the listener's error rule adds it.
            assert ready.headers["Cache-Control"] == "private, no-store"
    finally:
        redis_server.start()
    assert (await admin.call("PUT", "down1", body("down1")))[0] == 201


# ---- merge patch, as a pure function


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 3}, {"a": 3, "b": 2}),
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"o": {"x": 1, "y": 2}}, {"o": {"y": None, "z": 3}}, {"o": {"x": 1, "z": 3}}),
        ({"o": {"x": 1}}, {"o": [1]}, {"o": [1]}),
        ({"l": [1, 2]}, {"l": [3]}, {"l": [3]}),
        ({"o": 1}, {"o": {"a": None, "b": 1}}, {"o": {"b": 1}}),
    ],
)
def test_merge_patch(target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_patch(target, patch) == expected


# ---- what a write leaves behind: one audit line (fields, not JSON in a string) and its counts


async def test_each_write_is_one_audit_line_and_counted_by_result(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.admin")
    caplog.set_level(logging.INFO, logger="gateway.access")
    formatter = JsonFormatter()
    assert (await admin.call("PUT", "aud1", body("aud1", 2)))[0] == 201
    assert (await admin.call("PUT", "aud1", body("aud1", 2)))[0] == 200  # the same record again
    assert (await admin.call("PUT", "aud1", body("aud1", 1)))[0] == 409
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.getMessage() == "asset_write"]
    assert [(line["event"], line["result"], line["version"]) for line in lines] == [
        ("asset_write", "applied", 2), ("asset_write", "unchanged", 2), ("asset_write", "stale", 1),
    ]  # fmt: skip
    assert lines[0]["asset_id"] == "aud1" and lines[0]["method"] == "PUT" and lines[0]["applied"] is True
    assert ADMIN_TOKEN not in json.dumps(lines)
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    assert [(line["listener"], line["status"], line["client_ip"]) for line in access] == [
        ("admin", 201, "127.0.0.1"), ("admin", 200, "127.0.0.1"), ("admin", 409, "127.0.0.1"),
    ]  # fmt: skip
    gateway = admin.public.gateway
    assert gateway.metrics.counts.admin_writes == {"applied": 1, "unchanged": 1, "stale": 1}
    # The applied write came back over Redis pub/sub: counted with the time it arrived.
    listener = gateway.invalidations
    await until(lambda: listener.received >= 1, what="the write's invalidation arrives")
    counts = gateway.metrics.snapshot(gateway.store, 0, listener)
    assert counts.invalidation_messages == listener.received >= 1
    assert time.time() - 5 < counts.last_invalidation <= time.time()
