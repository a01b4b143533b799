"""Policies on a running gateway over real HTTP (real Redis, moto's S3 server): hot reload of an
edited directory, a broken edit refused and reported, requests during reloads, SIGHUP on a real
`serve` process, the internal example policy, and the admin listener's /explain and /readyz."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession, web

from gateway.app import create_admin_app
from gateway.http.runner import GatewayRunner
from gateway.observability import ACCESS_LOGGER
from gateway.settings import Secret
from tests.http.conftest import DRAFT, LIVE, LOGIN_URL, POLICIES, Keys, RunningGateway, gateway_settings
from tests.http.conftest import start_gateway as start_public
from tests.servers import S3Server, free_port, wait_for_port

ADMIN_TOKEN = "admin-token-for-policy-tests"
INTERNAL = POLICIES / "examples" / "internal"
# How long a test waits for a reload before it fails. The watcher applies an edit within about a
# second (0.5 s polls, 0.2 s settling, the inline tests); the margin is for a loaded CI machine.
RELOAD_DEADLINE = 15.0
OPEN = "rules:\n  - name: switch\n    when: {user_groups: [nobody-is-in-this]}\n    then: {deny: 404}\n"
# Blocks one group's users: a rule that leaves every inline test case of default.yaml passing, so
# a reload accepts it (one that contradicts a case is refused, see below).
BLOCK = "rules:\n  - name: switch\n    when: {user_groups: [blocked]}\n    then: {deny: 403}\n"
BROKEN = "rules:\n  - name: switch\n    when: {host: live}\n    then: {deny: 999}\n"


def write_atomically(path: Path, text: str) -> None:
    """As deploy tools do (and as the concurrency test needs: never a half-written file)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = RELOAD_DEADLINE) -> None:
    """Poll `check` until it holds. Fails at the deadline."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            pytest.fail(f"not true within {within}s")
        await asyncio.sleep(0.02)


@dataclass
class Served:
    running: RunningGateway
    admin_url: str
    policy_dir: Path
    blocked: dict[str, str]  # the headers of a user in the group BLOCK refuses

    async def status(self, path: str, **headers: str) -> int:
        response = await self.running.get(path, **headers)
        await response.read()
        return response.status

    async def admin(self, path: str, *, token: str | None = ADMIN_TOKEN, **headers: str) -> Any:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.running.session.get(self.admin_url + path, headers=headers) as response:
            return response.status, await response.json()


async def serve_policies(redis_url: str, s3: S3Server, keys: Keys, policy_dir: Path) -> AsyncIterator[Served]:
    settings = gateway_settings(
        redis_url, s3, keys, policies={"dir": str(policy_dir)}, admin={"token": Secret(ADMIN_TOKEN)}
    )
    runner, gateway, backend, base_url = await start_public(settings, s3)
    admin = GatewayRunner(create_admin_app(gateway))
    await admin.setup()
    port = free_port()
    await web.TCPSite(admin, "127.0.0.1", port).start()
    async with ClientSession() as session:
        running = RunningGateway(base_url, gateway, backend, s3, session)
        blocked = {"Authorization": f"Bearer {keys.user_token('u9', groups=['blocked'])}"}
        yield Served(running, f"http://127.0.0.1:{port}", policy_dir, blocked)
    await admin.cleanup()
    await runner.cleanup()


@pytest.fixture
async def served(redis_url: str, s3_server: S3Server, keys: Keys, tmp_path: Path) -> AsyncIterator[Served]:
    """The shipped policy, copied to a directory the test may edit, plus a neutral 00-switch.yaml."""
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    shutil.copy(POLICIES / "default.yaml", policy_dir / "default.yaml")
    write_atomically(policy_dir / "00-switch.yaml", OPEN)
    async for served in serve_policies(redis_url, s3_server, keys, policy_dir):
        yield served


@pytest.fixture
async def internal(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[Served]:
    async for served in serve_policies(redis_url, s3_server, keys, INTERNAL):
        yield served


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]


# ---- hot reload


async def test_an_edit_serves_and_the_log_names_the_revision(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    await served.running.put(id="hr1", filename="a.pdf")
    old = served.running.gateway.policy.policy.revision
    assert await served.status("/media/hr1/a.pdf", **served.blocked) == 302

    write_atomically(served.policy_dir / "00-switch.yaml", BLOCK)

    async def blocked() -> bool:
        return await served.status("/media/hr1/a.pdf", **served.blocked) == 403

    with caplog.at_level(logging.INFO):
        await eventually(blocked)
    new = served.running.gateway.policy.policy.revision
    assert new != old
    last = access_lines(caplog)[-1]
    assert (last["status"], last["rule"], last["policy_revision"]) == (403, "switch", new)
    assert f"policy reloaded: revision {old} -> {new}" in caplog.text
    status, body = await served.admin("/readyz", token=None)
    assert status == 200 and body["checks"]["policy"] == {"revision": new, "error": [], "reload_failures": 0}


async def test_a_broken_edit_keeps_the_old_policy_and_is_reported_until_fixed(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    await served.running.put(id="hr2", filename="a.pdf")
    current = served.running.gateway.policy
    good = current.policy.revision
    switch = served.policy_dir / "00-switch.yaml"

    with caplog.at_level(logging.ERROR, logger="gateway.policy.reload"):
        write_atomically(switch, BROKEN)

        async def refused() -> bool:
            return current.reload_failures == 1

        await eventually(refused)
    # The old behaviour continues...
    assert await served.status("/media/hr2/a.pdf", **served.blocked) == 302
    assert current.policy.revision == good
    # ...and the error is reported with file:line: in the log, in /readyz, on the holder.
    problem = f"{switch}:4: deny: expected a status in (403, 404, 410), got 999"
    assert f"policy reload failed: {problem} (still serving revision {good})" in caplog.text
    status, body = await served.admin("/readyz", token=None)
    assert status == 200 and body["ready"] is True
    assert body["checks"]["policy"] == {"revision": good, "error": [problem], "reload_failures": 1}
    assert [str(p) for p in current.last_error or ()] == [problem]

    write_atomically(switch, BLOCK)

    async def fixed() -> bool:
        return await served.status("/media/hr2/a.pdf", **served.blocked) == 403

    await eventually(fixed)
    status, body = await served.admin("/readyz", token=None)
    assert body["checks"]["policy"]["error"] == [] and current.last_error is None
    assert body["checks"]["policy"]["revision"] != good


async def test_an_edit_that_fails_its_own_test_cases_is_refused_like_a_parse_error(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting `draft_on_live_host` would serve drafts on the live host; its test case says so."""
    await served.running.put(id="hr3", filename="a.pdf", draft=True)
    current = served.running.gateway.policy
    good = current.policy.revision
    default = served.policy_dir / "default.yaml"
    text = default.read_text(encoding="utf-8")
    rule = "  - name: draft_on_live_host\n    when: {draft: true, host: live}\n"
    rule += "    then: redirect_to_draft_host\n\n"
    assert rule in text

    with caplog.at_level(logging.ERROR, logger="gateway.policy.reload"):
        write_atomically(default, text.replace(rule, ""))

        async def refused() -> bool:
            return current.reload_failures == 1

        await eventually(refused)
    assert current.policy.revision == good
    response = await served.running.get("/media/hr3/a.pdf")
    assert (response.status, urlsplit(response.headers["Location"]).hostname) == (302, DRAFT)
    edited = text.replace(rule, "").splitlines()
    case_line = edited.index("    expect: {status: 302, rule: draft_on_live_host}") + 1
    missing = "expect.rule: no rule named 'draft_on_live_host' in this policy (nor default_deny)"
    problem = f"{default}:{case_line}: {missing}"
    assert f"policy reload failed: {problem} (still serving revision {good})" in caplog.text
    status, body = await served.admin("/readyz", token=None)
    assert (status, body["ready"]) == (200, True)
    assert problem in body["checks"]["policy"]["error"]
    async with served.running.session.get(served.admin_url + "/metrics") as metrics:
        assert "asset_gateway_policy_reload_failures_total 1" in await metrics.text()


async def test_requests_during_reloads_each_get_the_old_or_the_new_answer(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """100 clients keep requests in flight while the policy flips between two valid versions six
    times: every answer is one of the two, and each matches the revision its own log line names."""
    await served.running.put(id="cc1", filename="a.pdf")
    current = served.running.gateway.policy
    switch = served.policy_dir / "00-switch.yaml"
    clients, flips = 100, 6
    expected = {current.policy.revision: 302}
    statuses: list[int] = []
    answered = asyncio.Condition()
    flipping = True

    async def client() -> None:
        while flipping or len(statuses) < 200:
            status = await served.status("/media/cc1/a.pdf", **served.blocked)
            async with answered:
                statuses.append(status)
                answered.notify_all()

    async def flip() -> None:
        nonlocal flipping
        for n in range(flips):
            # Wait until every client has started at least ten requests since the last swap: some
            # requests straddle each swap, and some are decided entirely after it.
            target = len(statuses) + clients + 10
            async with answered:
                await answered.wait_for(lambda: len(statuses) >= target)  # noqa: B023
            write_atomically(switch, BLOCK if n % 2 == 0 else OPEN)
            assert await current.refresh(force=True)
            expected[current.policy.revision] = 403 if n % 2 == 0 else 302
        flipping = False

    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await asyncio.gather(flip(), *(client() for _ in range(clients)))
    assert set(statuses) == {302, 403}
    assert statuses.count(403) >= 10 * (flips // 2)  # each BLOCK swap was seen by fresh requests
    assert len(expected) == 2  # two revisions, flipped between
    lines = access_lines(caplog)
    assert len(lines) == len(statuses) >= 200 + flips * clients
    for line in lines:
        assert line["status"] == expected[line["policy_revision"]], line
    assert current.reloads >= flips
    assert await served.status("/media/cc1/a.pdf", **served.blocked) == 302  # the last flip (OPEN) serves


# ---- the internal example policy


async def test_the_internal_example_serves_staff_a_ten_minute_download(internal: Served, keys: Keys) -> None:
    record = await internal.running.put(id="in1", filename="plan.pdf", body=b"board minutes")
    token = keys.user_token("s1", groups=["staff"])
    response = await internal.running.get("/media/in1/plan.pdf", Authorization=f"Bearer {token}")
    assert response.status == 302
    assert response.headers["Cache-Control"] == "private, no-store"
    location = response.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["600"]
    assert query["response-content-disposition"][0].startswith('attachment; filename="plan.pdf"')
    assert urlsplit(location).path.endswith(record.object_key)
    async with ClientSession() as plain, plain.get(location) as fetched:
        assert fetched.status == 200
        assert await fetched.read() == b"board minutes"
        assert fetched.headers["Content-Disposition"].startswith("attachment")


async def test_the_internal_example_refuses_everyone_else(internal: Served, keys: Keys) -> None:
    await internal.running.put(id="in2", filename="plan.pdf")
    anonymous = await internal.running.get("/media/in2/plan.pdf")
    assert anonymous.status == 302 and anonymous.headers["Location"].startswith(LOGIN_URL)
    outsider = keys.user_token("v1", groups=["press"])
    assert await internal.status("/media/in2/plan.pdf", Authorization=f"Bearer {outsider}") == 404
    assert await internal.status("/media/nothere/x.pdf", Authorization=f"Bearer {outsider}") == 404
    staff = keys.user_token("s1", groups=["staff"])
    assert await internal.status("/media/in2/plan.pdf", host=DRAFT, Authorization=f"Bearer {staff}") == 404
    contractor = keys.user_token("c1", org="contractor-ltd", groups=["staff"])
    assert await internal.status("/media/in2/plan.pdf", Authorization=f"Bearer {contractor}") == 403


# ---- the admin listener


async def test_admin_explain_returns_the_trace_and_never_the_token(served: Served, keys: Keys) -> None:
    await served.running.put(id="ex1", filename="r.pdf", access_limited={"groups": ["finance"]})
    token = keys.user_token("u7", groups=["finance"])
    status, body = await served.admin(
        f"/explain?url=http://{LIVE}/media/ex1/r.pdf", **{"X-Explain-Token": token}
    )
    assert status == 200
    revision = served.running.gateway.policy.policy.revision
    assert (body["decision"], body["status"], body["rule"]) == ("serve", 302, "serve")
    assert body["revision"] == revision
    assert body["private"] is True
    assert body["identity"]["user"] == {"sub": "u7", "org": None, "groups": ["finance"]}
    assert body["record"]["id"] == "ex1" and body["record"]["access_limited"] is True
    rules = [step["rule"] for step in body["trace"]]
    assert rules[0] == "switch" and rules[-1] == "serve"
    assert all(set(step) == {"rule", "where", "matched", "why"} for step in body["trace"])
    assert [step["matched"] for step in body["trace"]] == [False] * (len(rules) - 1) + [True]
    limited = next(step for step in body["trace"] if step["rule"] == "access_limited_not_admitted")
    assert "✗ user_admitted: wanted false, is true" in limited["why"]
    line = (POLICIES / "default.yaml").read_text().splitlines().index("  - name: access_limited_not_admitted")
    assert limited["where"] == f"{served.policy_dir / 'default.yaml'}:{line + 1}"
    text = json.dumps(body)
    assert token not in text and token[-16:] not in text
    assert body["refused"] == []


async def test_admin_explain_says_why_a_token_was_refused(served: Served, keys: Keys) -> None:
    token = keys.user_token("u7", ttl=-3600)
    status, body = await served.admin(
        f"/explain?url=http://{LIVE}/media/ex3/r.pdf", **{"X-Explain-Token": token}
    )
    assert status == 200
    assert body["identity"] == {"user": None, "preview": None}
    (refusal,) = body["refused"]
    assert refusal.endswith(": user token: expired; preview token: unknown_kid")
    assert token not in json.dumps(body)


async def test_admin_explain_masks_a_preview_link_and_answers_like_the_gateway(
    served: Served, keys: Keys
) -> None:
    await served.running.put(id="ex2", filename="d.pdf", draft=True, auth_bypass_ids=["bp-9"])
    preview = keys.preview_token("bp-9")
    status, body = await served.admin(f"/explain?host={DRAFT}&url=/media/ex2/d.pdf%3Ftoken%3D{preview}")
    assert status == 200
    assert (body["decision"], body["rule"]) == ("preview_cookie", "preview_link_sets_cookie")
    assert preview not in json.dumps(body)
    assert "token=<token:" in body["url"]
    # The public listener gives the same answer.
    response = await served.running.get(f"/media/ex2/d.pdf?token={preview}", host=DRAFT)
    assert response.status == 302 and "auth_bypass_token" in response.cookies


async def test_admin_explain_needs_the_admin_token_and_a_url(served: Served) -> None:
    status, body = await served.admin(f"/explain?url=http://{LIVE}/media/a/b.pdf", token=None)
    assert (status, body) == (401, {"error": "unauthorized"})
    status, body = await served.admin(f"/explain?url=http://{LIVE}/media/a/b.pdf", token="wrong")
    assert status == 401
    status, body = await served.admin("/explain")
    assert status == 400 and body["error"] == "invalid"
    assert body["details"][0].startswith("url: required")
    status, body = await served.admin("/explain?url=/media/a/b.pdf")
    assert status == 400 and body["details"] == ["host: required when url has no host"]
    status, body = await served.admin(f"/explain?url=http://{LIVE}/media/a/b.pdf&method=POST")
    assert status == 400 and body["details"] == ["method: expected GET or HEAD"]


# ---- SIGHUP on a real `serve` process


def test_sighup_reloads_a_running_server(tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    shutil.copy(POLICIES / "default.yaml", policy_dir / "default.yaml")
    port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_SERVER_PORT=str(port),
        GATEWAY_ADMIN_PORT=str(admin_port),
        GATEWAY_STATE_URL="memory://",
        GATEWAY_POLICIES_DIR=str(policy_dir),
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], stdout=log_file, stderr=log_file, env=env
        )
    try:
        wait_for_port(admin_port, timeout=20)

        def readyz() -> dict[str, Any]:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=5) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body

        before = readyz()["checks"]["policy"]["revision"]
        write_atomically(policy_dir / "00-switch.yaml", BLOCK)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "policy reloaded (SIGHUP)" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.02)
        assert process.poll() is None  # SIGHUP's default action would have ended it
        assert readyz()["checks"]["policy"]["revision"] != before
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
