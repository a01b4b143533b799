"""Running the listeners: one process, or N worker processes sharing the port with SO_REUSEPORT.
No clustering of our own: the kernel spreads connections, Redis holds the shared state."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile

from aiohttp import web

from gateway.app import build_gateway, create_public_app
from gateway.http.admin import create_admin_app
from gateway.http.runner import GatewayRunner
from gateway.metrics import SnapshotDirectory
from gateway.observability import configure_logging, mask_secrets, protect_secrets
from gateway.policy.language import PolicyError
from gateway.policy.reload import install_reload_signal
from gateway.runtime import install_stop_signals, run_async
from gateway.settings import ConfigError, Settings, secret_values

log = logging.getLogger(__name__)


def serve(settings: Settings, workers: int) -> int:
    configure_logging()
    protect_secrets(secret_values(settings))
    if workers == 1:
        return run_async(_serve_one(settings, reuse_port=False))
    # Each worker publishes its metrics here, so a scrape answered by any one of them covers all.
    metrics_dir = tempfile.mkdtemp(prefix="asset-gateway-metrics-")
    processes = [
        multiprocessing.get_context("fork").Process(
            target=_worker, args=(settings, metrics_dir, n), name=f"worker-{n}"
        )
        for n in range(workers)
    ]
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a HUP while a worker starts must not kill it
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()

    def reload(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload)  # each worker reloads its own policy
    for process in processes:
        process.join()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [p.exitcode for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def _worker(settings: Settings, metrics_dir: str, index: int) -> None:
    sys.exit(run_async(_serve_one(settings, reuse_port=True, metrics=SnapshotDirectory(metrics_dir, index))))


async def _serve_one(
    settings: Settings, *, reuse_port: bool, metrics: SnapshotDirectory | None = None
) -> int:
    try:
        gateway = build_gateway(settings)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("asset-gateway: refusing to start with an invalid policy", file=sys.stderr)
        return 2
    except (ConfigError, ValueError) as exc:
        print(f"asset-gateway: configuration error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    gateway.metrics.snapshots = metrics
    public = GatewayRunner(create_public_app(gateway))
    admin = GatewayRunner(create_admin_app(gateway), name="admin")
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
    install_reload_signal(gateway.policy)
    await stop.wait()
    await public.cleanup()
    await admin.cleanup()
    return 0
