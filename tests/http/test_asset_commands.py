"""`asset-gateway asset get|put|patch|delete` as a separate process, against a real admin listener
and Redis: what a publisher's shell script sees, exit statuses included."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import redis

from gateway.records import MAX_VERSION
from gateway.state.redis import asset_key
from tests.http.conftest import ADMIN_TOKEN, DRAFT, Admin
from tests.servers import free_port


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        parsed: dict[str, object] = json.loads(self.out)
        return parsed


async def cli(*args: str, stdin: str = "", token: str | None = ADMIN_TOKEN) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if token is not None:
        env["GATEWAY_ADMIN_TOKEN"] = token  # the env override of admin.token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "asset", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def record(version: int, **fields: object) -> str:
    return json.dumps({"version": version, "object_key": "objects/cli1", "filename": "cli.pdf", **fields})


async def test_put_get_patch_delete(admin: Admin) -> None:
    url = ("--admin-url", admin.url)
    created = await cli("put", "cli1", *url, stdin=record(1, draft=True))
    assert created.status == 0, created.err
    assert created.json()["draft"] is True
    assert created.err.strip() == "asset-gateway: created cli1 version 1"

    fetched = await cli("get", "cli1", *url)
    assert (fetched.status, fetched.json()) == (0, created.json())

    patched = await cli("patch", "cli1", *url, stdin='{"version": 2, "draft": false}')
    assert patched.status == 0, patched.err
    assert (patched.json()["version"], patched.json()["draft"]) == (2, False)

    stale = await cli("patch", "cli1", *url, stdin='{"version": 2, "draft": true}')
    assert stale.status == 1
    assert stale.err.strip() == "asset-gateway: refused: the store already holds version 2 (stale_version)"

    deleted = await cli("delete", "cli1", "--version", "3", *url)
    assert deleted.status == 0, deleted.err
    assert deleted.json()["deleted"] is True
    assert (await admin.stored("cli1") or {})["version"] == 3


async def test_put_from_a_file(admin: Admin, tmp_path: Path) -> None:
    source = tmp_path / "record.json"
    source.write_text(record(1))
    result = await cli("put", "cli2", str(source), "--admin-url", admin.url)
    assert result.status == 0, result.err
    assert (await admin.stored("cli2") or {})["filename"] == "cli.pdf"


async def test_refusals_are_readable(admin: Admin) -> None:
    url = ("--admin-url", admin.url)
    invalid = await cli("put", "cli3", *url, stdin='{"version": "one", "state": "nope"}')
    assert invalid.status == 1
    lines = invalid.err.splitlines()
    assert lines[0] == "asset-gateway: invalid record:"
    named = {line.split(":")[0].strip() for line in lines[1:]}
    assert named == {"version", "object_key", "filename", "state"}

    missing = await cli("get", "nosuch", *url)
    assert (missing.status, missing.err.strip()) == (1, "asset-gateway: no asset nosuch")

    wrong = await cli("get", "cli3", *url, token="not-the-token")
    assert wrong.status == 1
    assert "refused the token" in wrong.err

    unreachable = await cli("get", "cli3", "--admin-url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.status == 2
    assert "cannot reach the admin API" in unreachable.err

    no_token = await cli("get", "cli3", *url, token=None)
    assert no_token.status == 2
    assert "admin.token" in no_token.err
    assert await admin.stored("cli3") is None


async def test_put_force_recovers_a_frozen_record(admin: Admin) -> None:
    """A publisher's version at the top of the range leaves nothing newer; ops force a write."""
    url = ("--admin-url", admin.url)
    top = await cli("put", "cli4", *url, stdin=record(MAX_VERSION))
    assert top.status == 0, top.err
    stale = await cli("put", "cli4", *url, stdin=record(2, draft=True))
    assert stale.status == 1
    assert f"holds version {MAX_VERSION}" in stale.err
    forced = await cli("put", "cli4", "--force", *url, stdin=record(2, draft=True))
    assert forced.status == 0, forced.err
    assert (await admin.stored("cli4") or {})["version"] == 2
    async with await admin.public.get("/media/cli4/cli.pdf") as response:
        assert response.status == 302 and f"//{DRAFT}/" in response.headers["Location"]


async def test_unreadable_record_is_explained(admin: Admin, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).set(asset_key("cli5"), "garbage")
    result = await cli("get", "cli5", "--admin-url", admin.url)
    assert result.status == 1
    assert result.err.strip() == (
        "asset-gateway: the stored value of cli5 is not a record: put the whole record to repair it"
    )


async def test_legacy_fields_and_a_taken_path(admin: Admin) -> None:
    url = ("--admin-url", admin.url)
    path = "/government/uploads/system/uploads/attachment_data/file/5/café.pdf"
    created = await cli("put", "clg1", *url, stdin=record(1, legacy_url_path=path, legacy_etag='"old-1"'))
    assert created.status == 0, created.err
    stored = created.json()
    assert (
        stored["legacy_url_path"] == "/government/uploads/system/uploads/attachment_data/file/5/caf%C3%A9.pdf"
    )
    assert (stored["legacy_etag"], stored["legacy_last_modified"]) == ('"old-1"', None)
    taken = await cli("put", "clg2", *url, stdin=record(1, legacy_url_path=path))
    assert taken.status == 1
    assert taken.err.strip() == (
        "asset-gateway: refused: asset clg1 already holds that legacy_url_path (legacy_path_taken)"
    )
    bad = await cli("put", "clg3", *url, stdin=record(1, legacy_url_path="/media/x/y.pdf"))
    assert bad.status == 1
    assert bad.err.splitlines()[1].strip() == "legacy_url_path: must start with /government/uploads/"
