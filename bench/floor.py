"""The floor: a bare aiohttp handler that answers every request with one constant 302, served the
way the gateway is (uvloop, no access log, one process). Nothing the gateway does can be cheaper.

    python -m bench.floor --port 8081 --location https://...
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from gateway.runtime import install_stop_signals, run_async


def create_app(location: str) -> web.Application:
    headers = {"Location": location, "Cache-Control": "public, max-age=150"}

    async def constant(request: web.Request) -> web.Response:
        return web.Response(status=302, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", constant)
    return app


async def serve(port: int, location: str) -> int:
    runner = web.AppRunner(create_app(location), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    install_stop_signals(stop)
    await stop.wait()
    await runner.cleanup()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--location", required=True, help="the Location every answer carries")
    args = parser.parse_args()
    return run_async(serve(args.port, args.location))


if __name__ == "__main__":
    raise SystemExit(main())
