"""Load generation with wrk: one thread, a fixed number of connections, a bounded duration, and a
Lua `done` hook that reports requests, errors and latency percentiles as one JSON line."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.servers import pinned, require_binary

CONNECTIONS = 32

_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""

# Cycles through a list of paths, one per request, all pre-formatted once in init.
_CYCLE = """
local paths = {}
local n = 0
init = function(args)
  for line in io.lines(args[1]) do
    n = n + 1
    paths[n] = wrk.format(nil, line)
  end
end
local i = 0
request = function()
  i = i % n + 1
  return paths[i]
end
"""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    status_errors: int  # answers other than 2xx/3xx
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return self.status_errors == 0 and self.socket_errors == 0 and self.requests > 0


def run_wrk(
    url: str,
    *,
    seconds: float,
    directory: Path,
    cpus: str | None,
    headers: dict[str, str] | None = None,
    paths: list[str] | None = None,
    connections: int = CONNECTIONS,
) -> Result:
    """One wrk run against `url` (or cycling over `paths` on its host)."""
    script = directory / ("wrk-cycle.lua" if paths else "wrk-report.lua")
    script.write_text((_CYCLE if paths else "") + _REPORT)
    wrk = require_binary("wrk", "wrk")
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
               "-s", str(script)]  # fmt: skip
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if paths:
        listing = directory / "wrk-paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        command += ["--", str(listing)]
    done = subprocess.run(pinned(cpus, command), capture_output=True, text=True, timeout=seconds + 30)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            data = json.loads(line[len("BENCH ") :])
            return Result(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                status_errors=data["status_errors"],
                socket_errors=data["socket_errors"],
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
            )
    output = f"{done.stdout[-500:]} {done.stderr[-500:]}"
    raise RuntimeError(f"wrk gave no report (exit {done.returncode}): {output}")
