"""Processes the benchmark runs: a ready check, CPU pinning, redis-server, nginx, and RSS from /proc.
Everything listens on 127.0.0.1 only and is stopped by the runner that started it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
    )


def require_binary(name: str, package: str) -> str:
    """The binary's path, or exit saying which Debian package `make bench` installs it from."""
    binary = find_binary(name)
    if binary is None:
        raise SystemExit(f"bench: {name} is not installed (make bench installs {package})")
    return binary


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server under test and the load generator (plus helpers) run on."""

    server: str | None  # a taskset CPU list, or None for "wherever the kernel puts it"
    load: str | None

    @staticmethod
    def detect() -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2 and find_binary("taskset"):
            return Placement(str(cpus[0]), str(cpus[1]))
        return Placement(None, None)

    @property
    def pinned(self) -> bool:
        return self.server is not None

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned (fewer than 2 CPUs or no taskset)"
        return f"server on CPU {self.server}; wrk, redis-server and nginx on CPU {self.load}"


def pinned(cpus: str | None, command: Sequence[str]) -> list[str]:
    if cpus is None:
        return list(command)
    return ["taskset", "-c", cpus, *command]


@contextmanager
def running(
    command: Sequence[str],
    *,
    port: int,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command`, wait until it listens on `port`, and stop it (SIGTERM, then SIGKILL) after."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        list(command), env=env, stdout=out, stderr=out if log is not None else subprocess.DEVNULL, cwd=cwd
    )
    try:
        try:
            wait_for_port(port, process)
        except (RuntimeError, TimeoutError) as exc:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{exc}\n{tail}") from None
        yield process
    finally:
        stop(process)
        if log is not None and not isinstance(out, int):
            out.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def redis_command(port: int, directory: Path, cpus: str | None) -> list[str]:
    binary = find_binary("redis-server")
    if binary is None:
        raise SystemExit(
            "bench: redis-server is not installed (make bench installs it with scripts/ensure-packages.sh)"
        )
    return pinned(
        cpus,
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
    )  # fmt: skip


NGINX_MAIN = """\
daemon off;
master_process off;
worker_rlimit_nofile 4096;
error_log {dir}/nginx-error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
{body}
}}
"""


def nginx_command(directory: Path, name: str, body: str, cpus: str | None) -> list[str]:
    """One single-process nginx (no master, no privilege drop) serving `body` inside `http {}`."""
    binary = find_binary("nginx")
    if binary is None:
        raise FileNotFoundError("nginx")
    conf = directory / f"{name}.conf"
    conf.write_text(NGINX_MAIN.format(dir=directory, body=body))
    error_log = str(directory / "nginx-error.log")
    return pinned(cpus, [binary, "-p", str(directory), "-c", str(conf), "-e", error_log])
