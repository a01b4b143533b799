"""The floor: a bare aiohttp handler that answers every request with one constant 302, served the
way the gateway is (uvloop, no access log, one process). Nothing the gateway does can be cheaper.

    python -m bench.floor --port 8081 --location https://...
    python -m bench.floor --port 8081 --location https://... --raw

`--raw` answers below aiohttp, from a bare asyncio protocol that writes the same constant answer for
every request head it sees (no HTTP parsing worth the name: a measuring stick, never a server). It
shows what aiohttp's own request and response handling costs, the floor under every aiohttp row.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

from aiohttp import web

from gateway.runtime import install_stop_signals, run_async


def create_app(location: str) -> web.Application:
    headers = {"Location": location, "Cache-Control": "public, max-age=150"}

    async def constant(request: web.Request) -> web.Response:
        return web.Response(status=302, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", constant)
    return app


class _ConstantProtocol(asyncio.Protocol):
    """One constant answer per request head (`\r\n\r\n`) received, pipelined heads included."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._pending = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._pending += data
        heads = self._pending.count(b"\r\n\r\n")
        if heads and self._transport is not None:
            self._pending = self._pending[self._pending.rfind(b"\r\n\r\n") + 4 :]
            self._transport.write(self._answer * heads)


def raw_answer(location: str) -> bytes:
    """The aiohttp floor's answer, byte for byte as aiohttp sends it (but a fixed Date)."""
    return (
        "HTTP/1.1 302 Found\r\n"
        f"Location: {location}\r\n"
        "Cache-Control: public, max-age=150\r\n"
        "Content-Length: 0\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
        "Server: Python/3.11 aiohttp/3\r\n"
        "\r\n"
    ).encode()


async def serve(port: int, location: str, raw: bool = False) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    if raw:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _ConstantProtocol(raw_answer(location)), "127.0.0.1", port)
        await stop.wait()
        server.close()
        return 0
    runner = web.AppRunner(create_app(location), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await stop.wait()
    await runner.cleanup()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--location", required=True, help="the Location every answer carries")
    parser.add_argument("--raw", action="store_true", help="a bare asyncio protocol instead of aiohttp")
    args = parser.parse_args()
    return run_async(serve(args.port, args.location, args.raw))


if __name__ == "__main__":
    raise SystemExit(main())
