"""The demo's admin API lines, run as printed: reading the draft, publishing it, and the live host
serving it at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator

import pytest

from gateway.demo import (
    Demo,
    admin_examples,
    build_demo,
    embedded_s3,
    start_demo_admin,
    start_demo_app,
    upload_demo_files,
)
from tests.servers import free_port


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    with embedded_s3() as endpoint:
        built = build_demo(free_port(), endpoint, admin_port=free_port())
        upload_demo_files(endpoint, built.files)
        runner = await start_demo_app(built, built.settings.server.port)
        admin = await start_demo_admin(runner)
        yield built
        await admin.cleanup()
        await runner.cleanup()


def run(line: str, env: dict[str, str]) -> str:
    result = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_the_printed_admin_lines_publish_the_draft(demo: Demo) -> None:
    env = {**os.environ, "ADMIN": demo.settings.admin.token.reveal()}
    (_, read), (_, publish), (_, live) = admin_examples(demo)
    assert "Bearer $ADMIN" in read and env["ADMIN"] not in read  # the token comes from the shell

    before = await asyncio.to_thread(run, live, env)
    assert before.startswith("HTTP/1.1 302")
    assert "Location: http://draft-assets.localhost" in before

    record = json.loads(await asyncio.to_thread(run, read, env))
    assert (record["id"], record["draft"], record["version"]) == ("d7a9f0", True, 1)
    stored = json.loads(await asyncio.to_thread(run, publish, env))
    assert (stored["draft"], stored["version"]) == (False, 2)

    after = await asyncio.to_thread(run, live, env)
    assert f"Location: {demo.settings.s3.endpoint_url}" in after
