"""The handler without the network: µs per call of each pipeline step and of the whole handler,
in-process (no sockets, no wrk), so the numbers hold still on a busy machine.

    python -m bench.handler [--tree DIR]    # DIR: a copy of the tree to time instead (A/B)

What it leaves out (HTTP parsing, the event loop, writing the response) is what the floor measures;
the last lines put them back but for the sockets: request bytes through the connection handler of
the floor and of the gateway (an answer-cache hit), to a transport that only counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO


def timed(function: Callable[[], object], number: int) -> float:
    """Best of 5 runs, µs per call."""
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", help="import the gateway from this copy of the tree")
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, str(Path(args.tree).resolve()))
        for name in [m for m in sys.modules if m == "gateway" or m.startswith("gateway.")]:
            del sys.modules[name]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIABENCHMARKEXAMPLE")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    with tempfile.TemporaryDirectory(prefix="gateway-handler-") as tmp, open(os.devnull, "w") as devnull:
        print(f"gateway from {_gateway_dir()}")
        for line in asyncio.run(measure(Path(tmp), args.number, devnull)):
            print(line)
    return 0


def _gateway_dir() -> str:
    import gateway

    return str(Path(gateway.__file__).parent)


async def measure(directory: Path, number: int, devnull: TextIO) -> list[str]:
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request
    from botocore.credentials import Credentials

    from bench import fixtures
    from gateway.app import build_gateway, create_public_app
    from gateway.http.public import handle_media
    from gateway.http.runner import GatewayRunner
    from gateway.observability import configure_logging
    from gateway.presign import Presigner
    from gateway.settings import load_settings
    from gateway.state.memory import MemoryAssetStore

    identity = fixtures.make_identity(directory)
    config = fixtures.write_config(directory, "handler", port=1, admin_port=2, redis_url="memory://",
                                   identity=identity)  # fmt: skip
    settings = load_settings(str(config), {})
    store = MemoryAssetStore(
        [fixtures.record(fixtures.PUBLIC_ID), fixtures.record(fixtures.RESTRICTED_ID, users=(fixtures.USER,))]
    )
    presigner = Presigner(settings.s3, Credentials("AKIABENCHMARKEXAMPLE", "bench-secret"))
    gateway = build_gateway(settings, store=store, presigner=presigner)
    app = create_public_app(gateway)
    sys.stderr = devnull  # access lines go nowhere, as cheaply as to a file
    configure_logging()  # as `serve` does

    live = {"Host": fixtures.LIVE_HOST}
    cases = {
        "public": (fixtures.asset_path(fixtures.PUBLIC_ID), live),
        "restricted": (fixtures.asset_path(fixtures.RESTRICTED_ID),
                       {**live, "Authorization": f"Bearer {identity.user_token}"}),
    }  # fmt: skip
    lines = []
    loop = asyncio.get_running_loop()

    def run(coroutine_function: Callable[[], Any]) -> Callable[[], object]:
        # One await per call, driven without the event loop: what the handler costs by itself.
        def step() -> object:
            coroutine = coroutine_function()
            try:
                coroutine.send(None)
            except StopIteration as done:
                return done.value
            raise RuntimeError("the handler awaited something: not a warm request")

        return step

    floor_headers = {"Location": "x" * 560, "Cache-Control": "public, max-age=150"}

    async def floor_handler(request: web.Request) -> web.Response:
        return web.Response(status=302, headers=floor_headers)

    for name, (path, headers) in cases.items():
        request = make_mocked_request("GET", path, headers=headers, app=app)
        response = await handle_media(request)  # warms the record cache and the token cache
        assert response.status == 302, (name, response.status)
        lines.append(f"{name}:")
        for label, function in (await steps(gateway, request, path, handle_media, floor_handler)).items():
            lines.append(
                f"  {label:36} {timed(run(function) if label in AWAITED else function, number):7.2f} µs"
            )
    del loop
    floor_app = web.Application()
    floor_app.router.add_get("/{tail:.*}", floor_handler)
    lines.append("through the connection handler (request bytes in, answer bytes out; no sockets):")
    runners = {"floor (aiohttp, constant Response)": web.AppRunner(floor_app, access_log=None),
               "gateway (answer-cache hit)": GatewayRunner(app)}  # fmt: skip
    for runner in runners.values():
        await runner.setup()
    for name, (path, headers) in cases.items():
        head = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        raw = f"GET {path} HTTP/1.1\r\n{head}User-Agent: wrk\r\n\r\n".encode()
        for label, runner in runners.items():
            lines.append(f"  {name + ', ' + label:54} {await per_request(runner, raw, number):7.2f} µs")
    lines.append(f"  ({runners['gateway (answer-cache hit)'].answered_on_wire} answered on the wire)")
    for runner in runners.values():
        await runner.cleanup()
    return lines


class _Transport(asyncio.Transport):
    """A connection that counts what is written to it, and wakes whoever waits for an answer."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.waiter: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: Any) -> None:
        self.writes += 1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def per_request(runner: Any, raw: bytes, number: int) -> float:
    """µs per request fed to one keep-alive connection of `runner`'s server, one at a time, each
    answered before the next; best of 5 runs, after a warm-up."""
    protocol = runner.server()
    transport = _Transport()
    protocol.connection_made(transport)
    await asyncio.sleep(0)  # aiohttp's request handler task starts waiting for a request
    loop = asyncio.get_running_loop()

    async def one() -> None:
        before = transport.writes
        transport.waiter = loop.create_future()
        protocol.data_received(raw)
        if transport.writes == before:
            await transport.waiter
        # As between two reads of a real socket: the loop turns, and the request handler's task
        # finishes its answer and waits for the next request.
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    for _ in range(1000):
        await one()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            await one()
        best = min(best, (time.perf_counter() - started) / number * 1e6)
    protocol.connection_lost(None)
    return best


AWAITED = ("whole handler", "  lookup", "floor handler (constant Response)")


async def steps(
    gateway: Any, request: Any, path: str, handle_media: Any, floor_handler: Any
) -> dict[str, Callable[[], Any]]:
    """What to time for one request: the whole handler, each step with the inputs it really gets,
    and the floor's handler. The AWAITED ones return a coroutine, driven by `run`."""
    from gateway.http.shortcut import answer_on_wire
    from gateway.identify import identify
    from gateway.observability import log_access
    from gateway.policy.evaluation import decide

    now = time.time()
    message = request._message  # what the connection layer hands the wire answerer
    access, tokens, origin = gateway.parser.parse("GET", path, "", request.headers, peer="127.0.0.1")
    who = identify(tokens, gateway.verifier, now)
    record = await gateway.store.get(access.asset_id)
    decision = decide(access, who, record, gateway.policy.policy, now)
    fields = {"request_id": "0123456789abcdef", "method": "GET", "path": path, "host": access.host,
              "asset_id": access.asset_id, "status": 302, "outcome": "serve", "rule": "serve",
              "policy_revision": decision.revision, "duration_ms": 0.123}  # fmt: skip
    return {
        "whole handler": lambda: handle_media(request),
        "answer-cache hit on the wire": lambda: answer_on_wire(gateway, message, request.remote, False),
        "  parse": lambda: gateway.parser.parse("GET", path, "", request.headers, peer="127.0.0.1"),
        "  identify": lambda: identify(tokens, gateway.verifier, now),
        "  lookup": lambda: gateway.store.get(access.asset_id),
        "  decide": lambda: decide(access, who, record, gateway.policy.policy, now),
        "  respond": lambda: gateway.responder.respond(decision, access, origin, who, tokens, record, now),
        "  log": lambda: log_access(fields),
        "floor handler (constant Response)": lambda: floor_handler(request),
    }


if __name__ == "__main__":
    raise SystemExit(main())
