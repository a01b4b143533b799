"""Publish-to-visible latency across processes: two `asset-gateway serve` processes on one Redis;
each write goes through one's admin API and the other is asked until it answers with the new state.
Each write renames the file, so the other gateway answers 404 for the new name until it has
dropped its cached record (its cache TTL is 300 s: only the invalidation can make it visible).

    python -m bench.visibility [--writes 200]      (also the `visibility` row of `make bench`)

The tests only check that a write becomes visible (tests/test_two_gateways.py); the time it takes
is measured here, where a busy machine makes a number worse instead of a test fail."""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.servers import free_port, redis_command, running

PYTHON = sys.executable
GIVE_UP_AFTER = 5.0  # seconds: a write not visible by then is reported as lost


def _request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def measure(directory: Path, redis_url: str, writes: int) -> dict[str, Any]:
    """Latencies (ms) from the writer's 2xx to the first 302 for the new name on the other process."""
    identity = fixtures.make_identity(directory)
    env = fixtures.server_env(directory)
    token = secrets.token_urlsafe(24)
    ports = []
    with ExitStack() as stack:
        for name in ("writer", "reader"):
            port, admin_port = free_port(), free_port()
            config = fixtures.write_config(
                directory, f"visibility-{name}", port=port, admin_port=admin_port, redis_url=redis_url,
                identity=identity, cache_ttl=300, endpoint_url="http://127.0.0.1:9", admin_token=token,
            )  # fmt: skip
            command = [PYTHON, "-m", "gateway", "serve", "--config", str(config)]
            log = directory / f"visibility-{name}.log"
            stack.enter_context(running(command, port=admin_port, env=env, log=log, cwd=str(fixtures.REPO)))
            ports.append((port, admin_port))
        (_, writer_admin), (reader, _) = ports
        admin = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        live = {"Host": fixtures.LIVE_HOST}
        latencies: list[float] = []
        first_try = lost = 0
        for version in range(1, writes + 1):
            record = {"id": "vis-1", "version": version, "object_key": "objects/vis-1",
                      "filename": f"v{version}.pdf"}  # fmt: skip
            status = _request(writer_admin, "PUT", "/assets/vis-1", admin, json.dumps(record).encode())
            if status not in (200, 201):
                raise RuntimeError(f"visibility: PUT version {version} answered {status}")
            acknowledged = time.perf_counter()
            tries = 0
            while True:
                tries += 1
                if _request(reader, "GET", f"/media/vis-1/v{version}.pdf", live) == 302:
                    latencies.append((time.perf_counter() - acknowledged) * 1000)
                    first_try += tries == 1
                    break
                if time.perf_counter() - acknowledged > GIVE_UP_AFTER:
                    lost += 1
                    break
    if len(latencies) >= 2:
        quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    else:
        quantiles = [0.0] * 99
    return {
        "writes": writes,
        "visible": len(latencies),
        "lost": lost,
        "visible_on_first_request": first_try,
        "p50_ms": round(quantiles[49], 2),
        "p99_ms": round(quantiles[98], 2),
        "max_ms": round(max(latencies, default=0.0), 2),
    }


def describe(result: dict[str, Any]) -> str:
    return (
        f"publish->visible across processes: {result['visible']}/{result['writes']} writes visible "
        f"(lost {result['lost']}), p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms, {result['visible_on_first_request']} on the first request"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-visibility-") as tmp:
        directory = Path(tmp)
        port = free_port()
        data = directory / "redis"
        data.mkdir()
        with running(redis_command(port, data, None), port=port):
            print(describe(measure(directory, f"redis://127.0.0.1:{port}/0", args.writes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
