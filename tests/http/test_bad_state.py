"""Bad stored values, frozen versions and bugs, over real HTTP against a real redis-server: a bad key
fails only its own id (503, never served), every request is logged and counted, an admin PUT
repairs the key, and an audited forced write recovers a record whose version is out of reach."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import redis

from gateway.models import AssetRecord
from gateway.observability import ACCESS_LOGGER
from gateway.records import MAX_VERSION, STORED_MAX_VERSION, record_to_dict
from gateway.state.redis import INVALIDATION_CHANNEL, asset_key
from tests.http.conftest import DRAFT, LIVE, Admin, RunningGateway, body

# Hand-made values under our key pattern: not a hash, a record that is not JSON, JSON that is not
# a record, a record of the stored shape with a field of the wrong type, a version that is not a
# number, a hash with no record at all.
WRONG_TYPE = {
    **record_to_dict(AssetRecord(id="x", version=3, object_key="k", filename="f.pdf")),
    "draft": "no",
}
CORRUPTIONS: dict[str, tuple[str, Any]] = {
    "string": ("set", "garbage"),
    "not_json": ("hset", {"version": "3", "record": "{not json"}),
    "not_a_record": ("hset", {"version": "3", "record": '{"id": "x"}'}),
    "wrong_type": ("hset", {"version": "3", "record": json.dumps(WRONG_TYPE)}),
    "bad_version": ("hset", {"version": "three", "record": "{}"}),
    "no_record": ("hset", {"version": "3"}),
}


def corrupt(url: str, asset_id: str, how: str) -> None:
    command, value = CORRUPTIONS[how]
    client = redis.Redis.from_url(url)
    try:
        client.delete(asset_key(asset_id))
        if command == "set":
            client.set(asset_key(asset_id), value)
        else:
            client.hset(asset_key(asset_id), mapping=value)
    finally:
        client.close()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]


def requests_counted(running: RunningGateway, status: int) -> int:
    counts = running.gateway.metrics.counts.requests
    return sum(n for (_, _, _, got), n in counts.items() if got == str(status))


# A hash without a `record` field reads as no record at all (404: nothing to serve either).
@pytest.mark.parametrize("how", sorted(set(CORRUPTIONS) - {"no_record"}))
async def test_a_bad_key_fails_only_its_own_id(
    running: RunningGateway, redis_url: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good = [await running.put(id=f"good{i}", filename="f.pdf") for i in range(20)]
    corrupt(redis_url, "bad1", how)

    async def fetch(asset_id: str) -> tuple[str, int, str | None, str]:
        async with await running.get(f"/media/{asset_id}/f.pdf") as response:
            await response.read()
            return (
                asset_id,
                response.status,
                response.headers.get("Retry-After"),
                response.headers["X-Request-Id"],
            )

    # Many concurrent cache misses share one pipelined read: the bad key must not fail the batch.
    answers = []
    for _ in range(3):
        running.gateway.store.clear()
        answers += await asyncio.gather(
            *(fetch(asset_id) for asset_id in ["bad1", *(r.id for r in good), "bad1"])
        )
        for asset_id, status, retry_after, _ in answers:
            if asset_id == "bad1":
                assert status == 503 and retry_after is not None
            else:
                assert status == 302, (asset_id, status)

    lines = access_lines(caplog)
    bad_lines = [line for line in lines if line.get("asset_id") == "bad1"]
    assert len(bad_lines) == 6
    assert {line["outcome"] for line in bad_lines} == {"record_unreadable"}
    assert sorted(line["request_id"] for line in bad_lines) == sorted(a[3] for a in answers if a[0] == "bad1")
    assert requests_counted(running, 503) == 6
    assert "garbage" not in caplog.text and "not json" not in caplog.text


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
async def test_an_admin_put_repairs_a_bad_key(admin: Admin, redis_url: str, how: str) -> None:
    corrupt(redis_url, "bad2", how)
    unreadable = (
        (409, {"error": "record_unreadable"}) if how != "no_record" else (404, {"error": "not_found"})
    )
    status, answer, _ = await admin.call("GET", "bad2")
    assert (status, answer) == unreadable
    status, answer, _ = await admin.call("PATCH", "bad2", {"version": 9, "draft": True})
    assert (status, answer) == unreadable
    async with await admin.public.get("/media/bad2/file.pdf") as response:
        assert response.status == (503 if how != "no_record" else 404)

    if how in ("not_a_record", "wrong_type"):  # its version is readable: the repair must be newer
        status, answer, _ = await admin.call("PUT", "bad2", body("bad2", 1))
        assert (status, answer) == (409, {"error": "stale_version", "current_version": 3})
        status, stored, _ = await admin.call("PUT", "bad2", body("bad2", 4))
    else:  # nothing readable is stored: any version repairs it
        status, stored, _ = await admin.call("PUT", "bad2", body("bad2", 1))
    assert status == 200  # a repair replaces a value: 200, not 201
    assert await admin.stored("bad2") == stored
    async with await admin.public.get("/media/bad2/file.pdf") as response:
        assert response.status == 302
    raw = redis.Redis.from_url(redis_url).hgetall(asset_key("bad2"))
    assert set(raw) == {b"version", b"record"}  # nothing of the bad value survives


async def test_a_bug_while_deciding_is_a_logged_and_counted_500(
    running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await running.put(id="clock1", filename="f.pdf")

    def broken_clock() -> float:
        raise RuntimeError("clock source failed")

    object.__setattr__(running.gateway, "clock", broken_clock)  # an injected input failing
    async with await running.get("/media/clock1/f.pdf") as response:
        assert response.status == 500
        assert "clock" not in await response.text()
        request_id = response.headers["X-Request-Id"]
    (line,) = [line for line in access_lines(caplog) if line.get("request_id") == request_id]
    assert (line["status"], line["outcome"]) == (500, "error")
    assert requests_counted(running, 500) == 1
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


# ---- frozen records


async def test_versions_are_capped_so_json_clients_stay_exact(admin: Admin) -> None:
    status, answer, _ = await admin.call("PUT", "cap1", body("cap1", MAX_VERSION + 1))
    assert status == 422
    assert [d["field"] for d in answer["details"]] == ["version"]
    status, _, _ = await admin.call("PUT", "cap1", body("cap1", MAX_VERSION))
    assert status == 201
    status, answer, _ = await admin.call("DELETE", "cap1", version=str(MAX_VERSION + 1))
    assert (status, answer["details"][0]["field"]) == (422, "version")


async def test_a_forced_put_unfreezes_a_record_and_is_audited(
    admin: Admin, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A record stored before the cap, at the top of the old range: no version can beat it.
    frozen = json.dumps(body("frz1", STORED_MAX_VERSION))
    redis.Redis.from_url(redis_url).hset(
        asset_key("frz1"), mapping={"version": str(STORED_MAX_VERSION), "record": frozen}
    )
    async with await admin.public.get("/media/frz1/file.pdf") as response:
        assert response.status == 302  # still served: stored records keep the old range
    status, answer, _ = await admin.call("PUT", "frz1", body("frz1", MAX_VERSION, draft=True))
    assert (status, answer["error"]) == (409, "stale_version")
    status, answer, _ = await admin.call("PUT", "frz1", body("frz1", 5, draft=True), force="maybe")
    assert (status, answer["details"][0]["field"]) == (422, "force")

    caplog.set_level(logging.INFO, logger="gateway.admin")
    subscriber = redis.Redis.from_url(redis_url).pubsub()
    subscriber.subscribe(INVALIDATION_CHANNEL)
    status, answer, _ = await admin.call("PUT", "frz1", body("frz1", 5, draft=True), force="true")
    assert (status, answer["version"], answer["draft"]) == (200, 5, True)
    messages = [subscriber.get_message(timeout=1) for _ in range(2)]
    assert {
        "type": "message",
        "channel": INVALIDATION_CHANNEL.encode(),
        "data": b"frz1",
        "pattern": None,
    } in messages
    (audit,) = [
        r for r in caplog.records
        if r.name == "gateway.admin" and r.getMessage() == "asset_write" and r.fields["asset_id"] == "frz1"
    ]  # fmt: skip
    assert audit.levelno == logging.WARNING
    assert audit.fields["forced"] is True

    async with await admin.public.get("/media/frz1/file.pdf", host=LIVE) as response:
        assert response.status == 302
        assert f"//{DRAFT}/" in response.headers["Location"]  # unpublished at once
    status, _, _ = await admin.call("PATCH", "frz1", {"version": 6, "draft": False})
    assert status == 200  # ordinary writes work again
