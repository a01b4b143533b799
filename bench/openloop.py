"""Open-loop latency with h2load: requests sent at a fixed rate whatever the answers' pace, so a slow
server shows up as latency instead of as fewer requests (wrk's closed loop hides it that way).

h2load prints only min/max/mean per request, so its `--log-file` (one line per request: start in
µs since the epoch, status, µs to the end of the response) gives the percentiles here. `--rps` is
per connection: the total rate is split over `connections`, started one a millisecond (`-r 1
--rate-period 1ms`, h2load's finest step) so they do not all fire in the same instant. A connection
waits for its answer before sending the next request (HTTP/1.1, no pipelining), so a connection
whose answer is late sends late: the achieved rate is reported to show when that happened."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.servers import pinned, require_binary

CONNECTIONS = 64


@dataclass(frozen=True)
class Latency:
    rate: float  # asked, requests/s over all connections
    achieved: float  # requests answered / measured seconds
    requests: int  # measured (after the warm-up)
    bad: int  # answers other than 2xx/3xx, and requests that got none
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest rank: the smallest value with at least `fraction` of them at or below it."""
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def run_h2load(
    url: str,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    directory: Path,
    cpus: str | None,
    host: str,
    connections: int = CONNECTIONS,
) -> Latency:
    """`rate` req/s for `warmup + seconds`, bounded by count (-n) and by a timeout; requests that
    started in the first `warmup` seconds are left out."""
    log = directory / "h2load.log"
    log.unlink(missing_ok=True)
    total = max(connections, round(rate * (warmup + seconds)))
    h2load = require_binary("h2load", "nghttp2-client")
    command = [h2load, "--h1", "-c", str(connections), "-n", str(total),
               "--rps", f"{rate / connections:.3f}", "-r", "1", "--rate-period", "1ms",
               "-H", f":authority: {host}", "--log-file", str(log), url]  # fmt: skip
    done = subprocess.run(pinned(cpus, command), capture_output=True, text=True,
                          timeout=warmup + seconds + 60)  # fmt: skip
    if done.returncode != 0 or not log.exists():
        output = f"{done.stdout[-500:]} {done.stderr[-500:]}"
        raise RuntimeError(f"h2load failed (exit {done.returncode}): {output}")
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    first = min(int(row[0]) for row in rows)
    measured = [row for row in rows if int(row[0]) >= first + warmup * 1e6]
    if not measured:
        raise RuntimeError("h2load: no request after the warm-up")
    starts = [int(row[0]) for row in measured]
    span = (max(starts) - min(starts)) / 1e6 or seconds
    ordered = sorted(int(row[2]) for row in measured)
    bad = sum(1 for row in measured if not 200 <= int(row[1]) < 400) + total - len(rows)
    return Latency(
        rate=rate,
        achieved=len(measured) / span,
        requests=len(measured),
        bad=bad,
        p50_ms=percentile(ordered, 0.50) / 1000,
        p99_ms=percentile(ordered, 0.99) / 1000,
        p999_ms=percentile(ordered, 0.999) / 1000,
        max_ms=ordered[-1] / 1000,
    )


def describe(name: str, latency: Latency) -> str:
    bad = f", {latency.bad} bad" if latency.bad else ""
    return (
        f"open loop, {name}: {latency.rate:.0f} req/s asked, {latency.achieved:.0f} got; p50 "
        f"{latency.p50_ms:.2f}  p99 {latency.p99_ms:.2f}  p99.9 {latency.p999_ms:.2f}  max "
        f"{latency.max_ms:.2f} ms ({latency.requests:,} requests{bad}; h2load, {CONNECTIONS} connections)"
    )
