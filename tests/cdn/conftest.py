"""A stand-in CDN: a local aiohttp server that records every purge call, and that a test can make
refuse calls (a CDN outage) or hold them (a gateway dying mid-purge)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.servers import free_port


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    answered: int


@dataclass
class RecordingCdn:
    url: str
    calls: list[Call] = field(default_factory=list)  # answered calls
    received: int = 0  # calls that arrived, answered or still held
    down: bool = False  # answer 503, as an overloaded or restarting CDN does
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.release.set()

    def confirmed(self, header: str = "Surrogate-Key") -> list[str]:
        """The header's value of every call answered with success, in order."""
        return [c.headers.get(header, "") for c in self.calls if 200 <= c.answered < 300]


@pytest.fixture
async def cdn() -> AsyncIterator[RecordingCdn]:
    port = free_port()
    recorder = RecordingCdn(f"http://127.0.0.1:{port}/")

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        recorder.received += 1
        await recorder.release.wait()
        status = 503 if recorder.down else 200
        recorder.calls.append(Call(request.method, request.path, dict(request.headers), status))
        return web.json_response({"status": "ok"} if status == 200 else {"error": "down"}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield recorder
    recorder.release.set()
    await runner.cleanup()
