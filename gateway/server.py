"""Running the listeners: one process, or N supervised worker processes sharing its sockets.

The parent binds both listening sockets itself, without SO_REUSEPORT, before any worker starts, and
the workers inherit them: a second `serve` on a busy port fails at start with one line naming the
port instead of joining it and answering half the requests with another configuration. The
kernel still spreads connections over the workers (they all accept on the same socket).

A worker that dies is logged, its published metrics are dropped, and it is replaced after a
backoff; if workers keep dying (MAX_DEATHS within DEATH_WINDOW seconds) the parent stops them all
and exits 1, so the orchestrator sees a failed process instead of a host serving at half strength."""

from __future__ import annotations

import asyncio
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from aiohttp import web

from gateway.app import build_gateway, create_admin_app, create_public_app
from gateway.http.runner import GatewayRunner
from gateway.metrics import SnapshotDirectory
from gateway.observability import configure_logging, mask_secrets, protect_secrets
from gateway.policy.language import PolicyError
from gateway.policy.reload import install_reload_signal
from gateway.runtime import freeze_start_up_objects, install_stop_signals, run_async
from gateway.settings import ConfigError, Settings, listener_limits, secret_values

log = logging.getLogger(__name__)

BACKLOG = 1024
MAX_DEATHS = 5  # worker deaths within DEATH_WINDOW seconds that make the parent give up
DEATH_WINDOW = 60.0
BACKOFF_FIRST = 0.25  # seconds before replacing a dead worker; doubles with each recent death
BACKOFF_MAX = 8.0
EXIT_CONFIG = 2  # a worker (or the parent) refused the configuration: replacing it cannot help
# File descriptors a process needs besides its connections: Redis, S3, policy files, logs, sockets.
RESERVED_DESCRIPTORS = 64


class ListenError(Exception):
    """A listening socket could not be opened; the message is the one line the operator sees."""


@dataclass(frozen=True, slots=True)
class Listeners:
    public: socket.socket
    admin: socket.socket


def bind(host: str, port: int, key: str) -> socket.socket:
    """A listening socket on (host, port), without SO_REUSEPORT: a port another process holds is
    an error here, never shared. `key` names the setting to change in the message."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise ListenError(f"{key.replace('port', 'host')}: cannot resolve {host!r}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart despite TIME_WAIT
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        env = "GATEWAY_" + key.replace(".", "_").upper()
        if exc.errno == errno.EADDRINUSE:
            reason = "is already in use (another asset-gateway or server is listening there)"
        else:
            reason = f"cannot be opened: {exc.strerror}"
        raise ListenError(f"{key}: {host}:{port} {reason}; set {key} or {env} to a free port") from None
    return sock


def open_listeners(settings: Settings) -> Listeners:
    public = bind(settings.server.host, settings.server.port, "server.port")
    try:
        admin = bind(settings.admin.host, settings.admin.port, "admin.port")
    except ListenError:
        public.close()
        raise
    return Listeners(public, admin)


def ensure_descriptors(settings: Settings) -> str | None:
    """Raise the soft open-files limit to what both listeners' connection caps need (up to the hard
    limit); the warning to log when that is not enough: past the limit, accepting fails for every
    listener at once and the policy watcher cannot open files, where the caps refuse only the excess.
    Logged once the process is known to start, so a configuration error stays the only line."""
    needed = RESERVED_DESCRIPTORS + sum(
        listener_limits(settings, admin=admin).max_connections for admin in (False, True)
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (
            f"open files are limited to {soft}, but server.max_connections and admin.max_connections "
            f"need {needed}: lower them or raise the limit (ulimit -n), or the limit will refuse "
            "connections first"
        )
    return None


def serve(settings: Settings, workers: int) -> int:
    configure_logging(settings.server.log_level)
    protect_secrets(secret_values(settings))
    shortfall = ensure_descriptors(settings)
    try:
        listeners = open_listeners(settings)
    except ListenError as exc:
        print(f"asset-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if workers == 1:
        return run_async(_serve_one(settings, listeners, shortfall=shortfall))
    return Supervisor(settings, listeners, workers, shortfall).run()


class Supervisor:
    """Starts `workers` forked processes on the inherited sockets and keeps that many running."""

    def __init__(
        self, settings: Settings, listeners: Listeners, workers: int, shortfall: str | None = None
    ) -> None:
        self.settings = settings
        self.shortfall = shortfall
        self.listeners = listeners
        self.count = workers
        # Each worker publishes its metrics here, so a scrape answered by any one of them covers all.
        self.metrics_dir = tempfile.mkdtemp(prefix="asset-gateway-metrics-")
        self.processes: dict[int, BaseProcess] = {}
        self.restart_at: dict[int, float] = {}
        self.deaths: deque[float] = deque()
        self.stopping = False
        self.exit_code = 0

    def run(self) -> int:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a HUP while a worker starts must not kill it
        for index in range(self.count):
            self._start(index)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)  # each worker reloads its own policy
        log.info(
            "serving on http://%s:%s (admin http://%s:%s) with %d workers",
            *self.listeners.public.getsockname()[:2], *self.listeners.admin.getsockname()[:2], self.count,
        )  # fmt: skip
        if self.shortfall:
            log.warning("%s", self.shortfall)
        try:
            while not self.stopping or self.processes:
                self._watch()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return self.exit_code

    def _watch(self) -> None:
        """Wait for a worker to exit or a restart to fall due, and act on it."""
        now = time.monotonic()
        due = [when - now for when in self.restart_at.values()]
        timeout = max(0.0, min(due)) if due else 1.0
        by_sentinel = {process.sentinel: index for index, process in self.processes.items()}
        for sentinel in multiprocessing.connection.wait(list(by_sentinel), timeout):
            index = by_sentinel[sentinel]  # type: ignore[index]
            process = self.processes.pop(index)
            process.join()
            self._exited(index, process)
        now = time.monotonic()
        for index, when in list(self.restart_at.items()):
            if when <= now:
                del self.restart_at[index]
                if not self.stopping:
                    self._start(index)

    def _exited(self, index: int, process: BaseProcess) -> None:
        SnapshotDirectory(self.metrics_dir, index).drop()  # a dead worker's counts no longer count
        code = process.exitcode
        if self.stopping:
            if code not in (0, -signal.SIGTERM):
                self.exit_code = self.exit_code or 1
            return
        if code == EXIT_CONFIG:
            log.error("worker %d refused the configuration; stopping", index)
            self._give_up(EXIT_CONFIG)
            return
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - DEATH_WINDOW:
            self.deaths.popleft()
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit {code}"
        if len(self.deaths) >= MAX_DEATHS:
            log.error(
                "worker %d (pid %s) died (%s): %d deaths within %.0f s, stopping",
                index, process.pid, how, len(self.deaths), DEATH_WINDOW,
            )  # fmt: skip
            self._give_up(1)
            return
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(self.deaths) - 1))
        log.error("worker %d (pid %s) died (%s); replacing it in %.2f s", index, process.pid, how, delay)
        self.restart_at[index] = now + delay

    def _start(self, index: int) -> None:
        process = multiprocessing.get_context("fork").Process(
            target=_worker,
            args=(self.settings, self.listeners, self.metrics_dir, index),
            name=f"worker-{index}",
        )
        process.start()
        self.processes[index] = process

    def _give_up(self, code: int) -> None:
        self.exit_code = code
        self._stop(signal.SIGTERM, None)

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        self.restart_at.clear()
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()

    def _reload(self, signum: int, _frame: object) -> None:
        for process in self.processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)


def _worker(settings: Settings, listeners: Listeners, metrics_dir: str, index: int) -> None:
    # The parent's handlers are not this process's; the event loop installs its own.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    metrics = SnapshotDirectory(metrics_dir, index)
    sys.exit(run_async(_serve_one(settings, listeners, metrics=metrics)))


async def _serve_one(
    settings: Settings,
    listeners: Listeners,
    *,
    metrics: SnapshotDirectory | None = None,
    shortfall: str | None = None,
) -> int:
    try:
        gateway = build_gateway(settings)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("asset-gateway: refusing to start with an invalid policy", file=sys.stderr)
        return EXIT_CONFIG
    except (ConfigError, ValueError) as exc:
        print(f"asset-gateway: configuration error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    if shortfall:
        log.warning("%s", shortfall)
    gateway.metrics.snapshots = metrics
    public = GatewayRunner(create_public_app(gateway))
    admin = GatewayRunner(create_admin_app(gateway), name="admin")
    for runner, sock in ((public, listeners.public), (admin, listeners.admin)):
        await runner.setup()
        await web.SockSite(runner, sock).start()
    if metrics is None:
        log.info(
            "serving on http://%s:%s (admin http://%s:%s)",
            *listeners.public.getsockname()[:2], *listeners.admin.getsockname()[:2],
        )  # fmt: skip
    freeze_start_up_objects()
    stop = asyncio.Event()
    install_stop_signals(stop)
    install_reload_signal(gateway.policy)
    await stop.wait()
    await public.cleanup()
    await admin.cleanup()
    return 0
