"""`asset-gateway serve` as real processes: supervised workers (a dead one is logged, replaced with
backoff and its metrics dropped; the parent gives up and exits 1 when they keep dying) and ports
that only one server's own workers share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.http.conftest import LIVE
from tests.servers import free_port, wait_for_port
from tests.test_metrics import parse, value

POLICIES = Path(__file__).resolve().parents[1] / "policies"
DEADLINE = 30.0  # seconds any wait below may take before the test fails


def environment(redis_url: str, public: int, admin: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "GATEWAY_STATE_URL": redis_url,
        "GATEWAY_SERVER_PORT": str(public),
        "GATEWAY_ADMIN_PORT": str(admin),
        "GATEWAY_POLICIES_DIR": str(POLICIES),
        "GATEWAY_HOSTS_LIVE": LIVE,
    }


@contextmanager
def serving(environ: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A running `serve`, its stderr going to a file the test can read as it grows."""
    with tempfile.TemporaryDirectory() as directory:
        log_path = Path(directory) / "stderr.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", *args], env=environ,
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
            try:
                yield process, log_path
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=DEADLINE)


def until(check, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not true after {DEADLINE}s: {what}"
        time.sleep(0.05)


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def get(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def scrape(admin: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
        return parse(response.read().decode())


def test_a_killed_worker_is_logged_replaced_and_its_metrics_dropped(redis_url: str) -> None:
    public, admin = free_port(), free_port()
    with serving(environment(redis_url, public, admin), "--workers", "2") as (process, log_path):
        wait_for_port(public)
        wait_for_port(admin)
        first = until(lambda: len(children(process.pid)) == 2 and children(process.pid), "two workers")
        for n in range(20):
            assert get(f"http://127.0.0.1:{public}/media/m{n}/f.pdf", Host=LIVE) == 404

        def counted() -> float:
            return value(scrape(admin), "asset_gateway_requests_total", rule="missing_record")

        until(lambda: counted() == 20, "both workers' counts in one scrape")
        # Kill both original workers, one after the other: whichever served the 20 requests, their
        # counts must leave the scrape once their processes are gone.
        for victim in sorted(first):
            os.kill(victim, signal.SIGKILL)
            until(lambda v=victim: v not in children(process.pid) and len(children(process.pid)) == 2,
                  f"worker {victim} replaced")  # fmt: skip
        assert process.poll() is None
        until(lambda: f"(pid {max(first)}) died (killed by SIGKILL); replacing it" in log_path.read_text(),
              "the death logged")  # fmt: skip
        assert f"(pid {min(first)}) died (killed by SIGKILL)" in log_path.read_text()

        def dropped() -> bool:
            samples = scrape(admin)
            return value(samples, "asset_gateway_workers") == 2 and counted() == 0

        until(dropped, "the dead workers' counts dropped, the new workers counted")
        assert get(f"http://127.0.0.1:{public}/media/m1/f.pdf", Host=LIVE) == 404  # still serving


def test_the_parent_exits_non_zero_when_workers_keep_dying(redis_url: str) -> None:
    public, admin = free_port(), free_port()
    with serving(environment(redis_url, public, admin), "--workers", "2") as (process, log_path):
        wait_for_port(admin)
        killed: set[int] = set()
        while process.poll() is None:
            current = children(process.pid) - killed
            for pid in current:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            assert len(killed) <= 12, "the parent kept replacing workers"
            time.sleep(0.02)
        assert process.wait(timeout=DEADLINE) == 1
        assert "5 deaths within 60 s, stopping" in log_path.read_text()


def _second_serve(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", *args], env=environ, capture_output=True,
        text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip


def test_a_second_serve_on_a_busy_port_fails_with_one_line(redis_url: str) -> None:
    public, admin = free_port(), free_port()
    environ = environment(redis_url, public, admin)
    with serving(environ, "--workers", "2") as (process, _):
        wait_for_port(public)
        wait_for_port(admin)
        for args in (("--workers", "2"), ("--workers", "1")):
            other_admin = free_port()
            second = _second_serve({**environ, "GATEWAY_ADMIN_PORT": str(other_admin)}, *args)
            assert second.returncode == 2
            assert second.stderr.strip().splitlines() == [
                f"asset-gateway: server.port: 127.0.0.1:{public} is already in use (another asset-gateway "
                "or server is listening there); set server.port or GATEWAY_SERVER_PORT to a free port"
            ]
        busy_admin = _second_serve({**environ, "GATEWAY_SERVER_PORT": str(free_port())})
        assert busy_admin.returncode == 2
        assert "admin.port: 127.0.0.1:" in busy_admin.stderr and "Traceback" not in busy_admin.stderr
        # The first keeps serving every request itself.
        assert process.poll() is None
        for n in range(10):
            assert get(f"http://127.0.0.1:{public}/media/m{n}/f.pdf", Host=LIVE) == 404


def test_a_second_serve_cannot_join_a_single_process_server(redis_url: str) -> None:
    public, admin = free_port(), free_port()
    environ = environment(redis_url, public, admin)
    with serving(environ) as (process, _):
        wait_for_port(public)
        second = _second_serve({**environ, "GATEWAY_ADMIN_PORT": str(free_port())}, "--workers", "2")
        assert second.returncode == 2
        assert f"server.port: 127.0.0.1:{public} is already in use" in second.stderr
        assert process.poll() is None


def _open_files(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_under_a_low_open_files_limit_the_caps_keep_health_reachable(redis_url: str) -> None:
    """The review's case: `ulimit -n 256` and 300 idle sockets. With caps that fit the limit the
    excess public connections get a bare 503 and /healthz and /readyz still answer."""
    import socket

    public, admin = free_port(), free_port()
    environ = {**environment(redis_url, public, admin), "GATEWAY_SERVER_MAX_CONNECTIONS": "150",
               "GATEWAY_ADMIN_MAX_CONNECTIONS": "20", "GATEWAY_SERVER_HEADER_TIMEOUT": "60"}  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        log_path = Path(directory) / "stderr.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"], env=environ, stdout=subprocess.DEVNULL,
                stderr=log, preexec_fn=lambda: _open_files(256),
            )  # fmt: skip
            idle: list[socket.socket] = []
            try:
                wait_for_port(public)
                wait_for_port(admin)
                refused = 0
                for _ in range(300):
                    sock = socket.create_connection(("127.0.0.1", public), timeout=DEADLINE)
                    idle.append(sock)
                # Those past the cap are answered 503 and closed by the server.
                for sock in idle[150:]:
                    data = sock.recv(4096)
                    refused += data.startswith(b"HTTP/1.1 503 ")
                assert refused >= 140
                assert get(f"http://127.0.0.1:{admin}/healthz") == 200
                assert get(f"http://127.0.0.1:{admin}/readyz") == 200
                assert process.poll() is None
                assert "open files are limited" not in log_path.read_text()
                for sock in idle:
                    sock.close()
                # Once they are gone, the public listener serves again.
                until(lambda: get(f"http://127.0.0.1:{public}/media/m1/f.pdf", Host=LIVE) == 404,
                      "public serving again")  # fmt: skip
            finally:
                for sock in idle:
                    sock.close()
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=DEADLINE)
            assert process.returncode == 0


def test_a_cap_above_the_open_files_limit_is_warned_about(redis_url: str) -> None:
    public, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as directory:
        log_path = Path(directory) / "stderr.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"], env=environment(redis_url, public, admin),
                stdout=subprocess.DEVNULL, stderr=log, preexec_fn=lambda: _open_files(256),
            )  # fmt: skip
            try:
                until(lambda: "open files are limited to 256" in log_path.read_text(), "the warning")
                assert "need 20064" in log_path.read_text()
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=DEADLINE)
