"""Hot reload of the policy directory: a valid edit is swapped in whole, an invalid one is refused
with file:line and counted while the last good policy keeps serving; SIGHUP reloads at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway import background
from gateway.app import build_gateway, create_public_app
from gateway.policy import reload as reload_module
from gateway.policy.language import Policy, PolicyError
from gateway.policy.loading import PolicySources, load_policy, read_sources
from gateway.policy.reload import CurrentPolicy, install_reload_signal
from gateway.settings import PoliciesSettings, Settings
from gateway.state.memory import MemoryAssetStore

SERVE = "rules:\n  - name: everything\n    then: serve\n"
DENY = "rules:\n  - name: nothing\n    then: {deny: 410}\n"
BROKEN = DENY + "  - name: oops\n    whne: {host: live}\n    then: serve\n"


def write(directory: Path, text: str, name: str = "policy.yaml") -> None:
    (directory / name).write_text(text, encoding="utf-8")


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    write(tmp_path, SERVE)
    return tmp_path


@pytest.fixture
def current(policy_dir: Path) -> CurrentPolicy:
    return CurrentPolicy(policy_dir, settle=0)


async def wait_for(condition: Callable[[], bool], within: float = 2.0) -> float:
    """Poll until `condition` holds; return the seconds it took. Fails at the deadline."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
async def watching(current: CurrentPolicy) -> AsyncIterator[CurrentPolicy]:
    current.interval = 0.05
    task = background.spawn(current.watch(), name="policy-watch-test")
    await wait_for(lambda: current._wake is not None)
    yield current
    await background.stop(task)


def test_the_revision_a_watcher_hashes_is_the_revision_that_loads(policy_dir: Path) -> None:
    write(policy_dir, DENY, "other.yaml")
    assert read_sources(policy_dir).revision == load_policy(policy_dir).revision


async def test_a_valid_edit_is_swapped_in_whole(current: CurrentPolicy, policy_dir: Path) -> None:
    before = current.policy
    write(policy_dir, DENY)
    assert await current.refresh() is True
    assert current.policy is not before
    assert [r.name for r in current.policy.rules] == ["nothing"]
    assert [r.name for r in before.rules] == ["everything"]  # the old object is untouched
    assert current.policy.revision != before.revision
    assert (current.reloads, current.reload_failures, current.last_error) == (1, 0, None)


async def test_unchanged_content_is_not_reloaded(current: CurrentPolicy) -> None:
    before = current.policy
    assert await current.refresh() is False
    assert current.policy is before and current.reloads == 0


async def test_an_invalid_edit_keeps_the_last_good_policy_and_is_reported(
    current: CurrentPolicy, policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = current.policy
    write(policy_dir, BROKEN)
    with caplog.at_level(logging.ERROR, logger="gateway.policy.reload"):
        assert await current.refresh() is False
    assert current.policy is good
    assert current.reload_failures == 1
    assert current.last_error is not None
    fields = "description, name, then, when"
    problem = f"{policy_dir / 'policy.yaml'}:5: unknown field 'whne' (expected one of {fields})"
    assert [str(p) for p in current.last_error] == [problem]
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [f"policy reload failed: {problem} (still serving revision {good.revision})"]
    # The same broken content is not counted (or logged) again at every look.
    caplog.clear()
    assert await current.refresh() is False
    assert current.reload_failures == 1 and not caplog.records


async def test_an_edit_that_fails_its_own_test_case_is_refused_like_an_invalid_one(
    current: CurrentPolicy, policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = current.policy
    case = (
        "tests:\n  - name: nothing_is_gone\n    request: {path: /media/a/b.pdf}\n    expect: {status: 410}\n"
    )
    write(policy_dir, SERVE + case)  # valid YAML and rules, but the case expects 410 and gets 302
    with caplog.at_level(logging.ERROR, logger="gateway.policy.reload"):
        assert await current.refresh() is False
    assert current.policy is good and current.reload_failures == 1
    problem = (
        f"{policy_dir / 'policy.yaml'}:5: test case 'nothing_is_gone' fails: status expected 410, got 404"
    )
    assert [str(p) for p in current.last_error or ()] == [problem]
    assert caplog.records[0].getMessage().startswith(f"policy reload failed: {problem}")
    write(policy_dir, DENY + case)  # the same case, now true
    assert await current.refresh() is True
    assert current.last_error is None


def test_a_process_does_not_start_with_a_policy_that_fails_its_own_test_case(policy_dir: Path) -> None:
    write(
        policy_dir,
        SERVE + "tests:\n  - name: t\n    request: {path: /media/a/b.pdf}\n    expect: {status: 410}\n",
    )
    with pytest.raises(PolicyError, match="test case 't' fails"):
        CurrentPolicy(policy_dir)


async def test_fixing_the_edit_applies_it_and_clears_the_error(
    current: CurrentPolicy, policy_dir: Path
) -> None:
    write(policy_dir, BROKEN)
    await current.refresh()
    write(policy_dir, DENY)
    assert await current.refresh() is True
    assert [r.name for r in current.policy.rules] == ["nothing"]
    assert current.last_error is None
    assert current.reload_failures == 1  # a counter: it never goes back


async def test_reverting_to_the_serving_content_clears_the_error(
    current: CurrentPolicy, policy_dir: Path
) -> None:
    revision = current.policy.revision
    write(policy_dir, BROKEN)
    await current.refresh()
    write(policy_dir, SERVE)
    assert await current.refresh() is True
    assert current.policy.revision == revision and current.last_error is None


async def test_a_vanished_directory_keeps_the_policy(current: CurrentPolicy, policy_dir: Path) -> None:
    good = current.policy
    (policy_dir / "policy.yaml").rename(policy_dir / "policy.yaml.moved")
    assert await current.refresh() is False
    assert current.policy is good
    assert current.last_error is not None
    assert "no *.yaml policy files" in str(current.last_error[0])


async def test_warnings_do_not_stop_a_reload(
    current: CurrentPolicy, policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(policy_dir, SERVE + "  - name: never\n    then: {deny: 404}\n")
    with caplog.at_level(logging.WARNING, logger="gateway.policy.reload"):
        assert await current.refresh() is True
    assert current.last_error is None
    assert any("can never match" in r.getMessage() for r in caplog.records)


async def test_a_forced_reload_rereads_unchanged_files(
    current: CurrentPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    before = current.policy
    with caplog.at_level(logging.INFO, logger="gateway.policy.reload"):
        assert await current.refresh(force=True) is True
    assert current.policy is not before and current.policy.revision == before.revision
    assert f"revision {before.revision} unchanged" in caplog.text


async def test_a_file_still_being_written_is_not_read_half_done(
    current: CurrentPolicy, policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The editor is still writing when the change is first seen: wait for it to settle."""
    reads = 0

    def read_while_an_editor_writes(directory: Path) -> PolicySources:
        nonlocal reads
        reads += 1
        sources = read_sources(directory)
        if reads == 1:
            write(policy_dir, DENY)  # the rest of the save lands after the first look
        return sources

    write(policy_dir, "rules:\n  - name: noth")  # half a file
    monkeypatch.setattr(reload_module, "read_sources", read_while_an_editor_writes)
    assert await current.refresh() is False
    assert current.reload_failures == 0 and current.last_error is None
    assert await current.refresh() is True
    assert [r.name for r in current.policy.rules] == ["nothing"]


async def test_the_watcher_notices_an_edit(watching: CurrentPolicy, policy_dir: Path) -> None:
    write(policy_dir, DENY)
    await wait_for(lambda: watching.policy.rules[0].name == "nothing")
    assert watching.reloads == 1


async def test_the_watcher_logs_an_unexpected_failure_and_keeps_watching(
    watching: CurrentPolicy,
    policy_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = 0

    def flaky(directory: Path) -> PolicySources:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise OSError("stale file handle")
        return read_sources(directory)

    monkeypatch.setattr(reload_module, "read_sources", flaky)
    write(policy_dir, DENY)
    with caplog.at_level(logging.ERROR, logger="gateway.policy.reload"):
        await wait_for(lambda: watching.policy.rules[0].name == "nothing")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].getMessage().startswith("policy watch: could not check")
    assert errors[0].exc_info is not None and "stale file handle" in str(errors[0].exc_info[1])


async def test_sighup_reloads_at_once(current: CurrentPolicy, policy_dir: Path) -> None:
    current.interval = 3600  # only the signal can make it look
    task = background.spawn(current.watch(), name="policy-watch-test")
    loop = asyncio.get_running_loop()
    try:
        await wait_for(lambda: current._wake is not None)
        install_reload_signal(current)
        write(policy_dir, DENY)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: current.policy.rules[0].name == "nothing", within=1.0)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await background.stop(task)


async def test_request_reload_before_the_watcher_runs_is_kept(
    current: CurrentPolicy, policy_dir: Path
) -> None:
    current.request_reload()
    current.interval = 3600
    task = background.spawn(current.watch(), name="policy-watch-test")
    try:
        await wait_for(lambda: current.reloads == 1)
    finally:
        await background.stop(task)


async def test_the_public_app_runs_the_watcher_for_its_lifetime(policy_dir: Path) -> None:
    from aiohttp import web

    settings = Settings(policies=PoliciesSettings(dir=str(policy_dir)))
    gateway = build_gateway(settings, store=MemoryAssetStore())
    runner = web.AppRunner(create_public_app(gateway))
    await runner.setup()
    try:
        assert "policy-watch" in background.running_tasks()
    finally:
        await runner.cleanup()
    assert "policy-watch" not in background.running_tasks()


def test_the_attributes_metrics_read_exist(current: CurrentPolicy) -> None:
    assert isinstance(current.policy, Policy) and isinstance(current.policy.revision, str)
    assert current.reload_failures == 0 and current.last_error is None
