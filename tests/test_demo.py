"""The demo's printed curl lines, run as printed, give the answers the demo claims."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest

from gateway.demo import Demo, build_demo, embedded_s3, start_demo_app, upload_demo_files
from gateway.settings import LegacySettings
from tests.servers import free_port

IMAGE = LegacySettings().image_placeholder


@pytest.fixture
async def demo() -> AsyncIterator[tuple[Demo, int]]:
    port = free_port()
    with embedded_s3() as endpoint:
        built = build_demo(port, endpoint)
        upload_demo_files(endpoint, built.files)
        runner = await start_demo_app(built, port)
        yield built, port
        await runner.cleanup()


def run_curl(line: str, env: dict[str, str]) -> tuple[int, str]:
    """Run a printed curl line through bash, adding only flags that report what came back."""
    command = line.replace("curl ", "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' ", 1)
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=20)
    status, _, location = result.stdout.partition(" ")
    return int(status), location


async def test_every_printed_curl_line_gives_the_claimed_status(demo: tuple[Demo, int]) -> None:
    built, port = demo
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the demo's printed commands")
    env = {**os.environ, **built.tokens.shell_variables()}
    assert len(built.cases) >= 15
    for case in built.cases:
        status, location = await asyncio.to_thread(run_curl, case.curl(port, built.tokens), env)
        assert status == case.expect_status, f"{case.title}: {case.curl(port, built.tokens)}"
        if "to S3" in case.expect or "presigned" in case.expect:
            assert location.startswith(built.settings.s3.endpoint_url), case.title


async def test_following_the_public_file_downloads_its_bytes(demo: tuple[Demo, int]) -> None:
    built, port = demo
    line = built.cases[0].curl(port, built.tokens).replace("curl -si", "curl -sL")
    result = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", line], capture_output=True, timeout=20, check=True
    )
    budget = next(f for f in built.files if f.record.id == "5a1b2c")
    assert result.stdout == budget.body


async def test_the_legacy_link_downloads_the_migrated_file(demo: tuple[Demo, int]) -> None:
    built, port = demo
    case = next(c for c in built.cases if c.title == "legacy Whitehall URL")
    line = case.curl(port, built.tokens).replace("curl -si", "curl -sL")
    result = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", line], capture_output=True, timeout=20, check=True
    )
    migrated = next(f for f in built.files if f.record.id == "w1a7e1")
    assert result.stdout == migrated.body
    placeholder = next(c for c in built.cases if c.title == "legacy URL, not yet cleared")
    env = {**os.environ, **built.tokens.shell_variables()}
    status, location = await asyncio.to_thread(run_curl, placeholder.curl(port, built.tokens), env)
    assert (status, location.rstrip()) == (302, f"{case.url(port).split('/government')[0]}{IMAGE}")
