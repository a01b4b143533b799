"""Where a gateway request's time goes: py-spy samples the server while wrk drives one scenario,
then the collapsed stacks are summarised as inclusive time per pipeline step and self time per
function.

    python -m bench.profile [--scenario public|restricted|cold|auth] [--seconds 8] [--raw stacks.txt]

Needs py-spy (`pip install py-spy`); sampling attaches with ptrace, so run as root or allow it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import fixtures
from bench.run import AUTH_SUBREQUEST, COLD_ASSETS, Bench, expect
from bench.servers import Placement

# Inclusive time of these frames (`Class.function (path`), in pipeline order.
STEPS = [
    ("handler (handle_media)", r"^handle_media \(gateway/http/public"),
    ("  request id", r"^request_id \(gateway/http/public"),
    ("  parse", r"^RequestParser\.parse \(gateway/parsing"),
    ("  identify (token cache)", r"^identify \(gateway/identify"),
    ("  lookup (cache, Redis)", r"^CachedAssetStore\.get \(gateway/state/cache"),
    ("  decide (policy)", r"^decide \(gateway/policy/evaluation"),
    ("  respond", r"^Responder\.respond \(gateway/responses"),
    ("    presign (SigV4)", r"^Presigner\.presign \(gateway/presign"),
    ("  log (access line)", r"^log_access \(gateway/observability"),
    ("aiohttp: send the response", r"^StreamResponse\.(prepare|_start|_write_headers)|^Response\.write_eof"),
]


def py_spy() -> str:
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        raise SystemExit("bench.profile: py-spy is not installed: .venv/bin/pip install py-spy")
    return binary


def summarise(raw: Path, top: int = 25) -> str:
    """Inclusive share per pipeline step, and the functions with the most self and inclusive time,
    from py-spy's collapsed stacks (`--format raw`: `frame;frame;... count`). py-spy leaves out
    samples of an idle thread, so every sample is time spent working."""
    total = 0
    steps: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for label, pattern in STEPS:
            if any(re.search(pattern, f) for f in frames):
                steps[label] += count
        self_time[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples of a busy process", "", "inclusive share, by pipeline step:"]
    for label, _ in STEPS:
        lines.append(f"  {label:30} {100 * steps[label] / total:5.1f}%")
    outside = 100 - 100 * steps[STEPS[0][0]] / total
    lines.append(f"  {'everything else (event loop, aiohttp)':30} {outside:5.1f}%")
    lines += ["", f"self time, top {top} functions:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    lines += ["", f"inclusive time, top {top} functions below the handler:"]
    below = [(name, n) for name, n in inclusive.most_common() if n < steps[STEPS[0][0]]]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in below[:top]]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:12)` → `func (pkg/mod.py)`."""
    match = re.match(r"(.*) \((.*?):?\d*\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    path = re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", path)
    path = re.sub(r".*/work/main/", "", path)
    return f"{name} ({path.rsplit(':', 1)[0]})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=("public", "restricted", "cold", "auth"), default="public")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--raw", help="keep the collapsed stacks here")
    args = parser.parse_args()
    binary = py_spy()
    placement = Placement.detect()
    live = {"Host": fixtures.LIVE_HOST}
    with tempfile.TemporaryDirectory(prefix="gateway-profile-") as tmp:
        directory = Path(tmp)
        bench = Bench(directory, placement, args.seconds, 1.0)
        with bench.redis() as client:
            fixtures.seed(client, [fixtures.PUBLIC_ID])
            fixtures.seed(client, [fixtures.RESTRICTED_ID], users=(fixtures.USER,))
            cold = [fixtures.asset_path(fixtures.cold_id(n)) for n in range(COLD_ASSETS)]
            fixtures.seed(client, [fixtures.cold_id(n) for n in range(COLD_ASSETS)])
            headers, path, paths = dict(live), fixtures.asset_path(fixtures.PUBLIC_ID), None
            if args.scenario == "restricted":
                headers["Authorization"] = f"Bearer {bench.identity.user_token}"
                path = fixtures.asset_path(fixtures.RESTRICTED_ID)
            elif args.scenario == "cold":
                path, paths = "/", cold
            elif args.scenario == "auth":
                headers = {**AUTH_SUBREQUEST, "X-Original-URI": path}
                path = "/auth"
            ttl = 0 if args.scenario == "cold" else 300
            with bench.gateway("profiled", cache_ttl=ttl, cpus=placement.server) as (port, pids):
                status = 204 if args.scenario == "auth" else 302
                expect(port, paths[0] if paths else path, headers, status, args.scenario)
                raw = Path(args.raw) if args.raw else directory / "stacks.txt"
                sampler = subprocess.Popen(
                    [binary, "record", "--pid", str(pids[0]), "--rate", str(args.rate), "--format", "raw",
                     "--duration", str(int(args.seconds)), "--output", str(raw), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                time.sleep(0.5)
                result, cpu = bench.measure(port, pids, path=path, headers=headers, paths=paths)
                _, errors = sampler.communicate(timeout=args.seconds + 30)
                if not raw.exists():
                    raise SystemExit(f"bench.profile: py-spy wrote nothing: {errors[-1000:]}")
                print(f"{args.scenario}: {result.rps:.0f} req/s, {cpu:.0f} µs CPU per request while sampled")
                print(summarise(raw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
