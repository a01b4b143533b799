"""Running the listeners: one process, or N worker processes sharing the port with SO_REUSEPORT.
No clustering of our own: the kernel spreads connections, Redis holds the shared state."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import sys

from aiohttp import web

from gateway.app import build_gateway, create_public_app
from gateway.http.admin import create_admin_app
from gateway.http.runner import GatewayRunner
from gateway.observability import configure_logging
from gateway.policy.language import PolicyError
from gateway.runtime import install_stop_signals, run_async
from gateway.settings import ConfigError, Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, workers: int) -> int:
    configure_logging()
    if workers == 1:
        return run_async(_serve_one(settings, reuse_port=False))
    processes = [
        multiprocessing.get_context("fork").Process(target=_worker, args=(settings,), name=f"worker-{n}")
        for n in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def _worker(settings: Settings) -> None:
    sys.exit(run_async(_serve_one(settings, reuse_port=True)))


async def _serve_one(settings: Settings, *, reuse_port: bool) -> int:
    try:
        gateway = build_gateway(settings)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("asset-gateway: refusing to start with an invalid policy", file=sys.stderr)
        return 2
    except (ConfigError, ValueError) as exc:
        print(f"asset-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    public = GatewayRunner(create_public_app(gateway))
    admin = GatewayRunner(create_admin_app(gateway))
    for runner, host, port in (
        (public, settings.server.host, settings.server.port),
        (admin, settings.admin.host, settings.admin.port),
    ):
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    log.info(
        "serving on http://%s:%s (admin http://%s:%s)",
        settings.server.host, settings.server.port, settings.admin.host, settings.admin.port,
    )  # fmt: skip
    stop = asyncio.Event()
    install_stop_signals(stop)
    await stop.wait()
    await public.cleanup()
    await admin.cleanup()
    return 0
