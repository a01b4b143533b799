"""`make bench`: the gateway measured side by side with the framework floor, in one run.

Every row is a ratio to the floor on the same machine; a row with a target is measured in rounds,
each right after the floor, and its ratio is the median of the rounds' (the machine's speed drifts
over minutes; a pair moves together). Servers run as subprocesses pinned to one CPU, wrk (and Redis,
nginx) to another; all traffic stays on 127.0.0.1.

    python -m bench.run [--seconds 6] [--warmup 2] [--only floor,public,...] [--json FILE]
    python -m bench.run --only auth,rss,latency --seconds 3 --warmup 1   # a few rows, quickly
    python -m bench.run --only public --baseline /tmp/tree-before   # A/B: a lever on and off

`--baseline DIR` names a copy of the tree (a directory holding `gateway/`) taken before a change:
each gateway row then runs twice, the copy right after the current tree, so both see the same load.
`--tree DIR` measures such a copy instead of this tree. Method and results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import fixtures, ingest, memory, visibility
from bench.load import Result, run_wrk
from bench.openloop import Latency, run_h2load
from bench.openloop import describe as describe_latency
from bench.servers import (
    Placement,
    children,
    find_binary,
    free_port,
    nginx_command,
    pinned,
    redis_command,
    running,
)

PYTHON = sys.executable
COLD_ASSETS = 2048
ROUNDS = 3  # paired rounds of each row with a target (`--rounds`)
# What the floor is asked, alone and in every pair: the public file's URL, as the warm rows ask it.
FLOOR_PATH = fixtures.asset_path(fixtures.PUBLIC_ID)
FLOOR_HEADERS = {"Host": fixtures.LIVE_HOST}
RSS_SIZES = {"rss": 100_000, "rss1m": 1_000_000}
INGEST_RECORDS = 100_000
VISIBILITY_WRITES = 200
SCENARIOS = ("floor", "public", "restricted", "cold", "auth", "nginx", "workers", "rss", "rss1m", "latency",
             "ingest", "visibility")  # fmt: skip
TARGETS = {"public": 0.75, "restricted": 0.70, "cold": 0.45}  # req/s over the floor's, at least
AUTH_CPU_TARGET = 1.10  # gateway CPU per /auth subrequest over CPU per warm /media, at most
RSS_TARGET_BYTES = 600  # per cached record, at most
LATENCY_P99_TARGET = 1.5  # open-loop p99 at half the floor's req/s, gateway over floor, at most
P99_TARGET_MS = 5.0
# What nginx's /_asset_auth location sends (nginx/auth_request.conf.template), for a browser's GET of
# a public file; X-Request-Id stands for nginx's $request_id (32 hex digits).
AUTH_SUBREQUEST = {
    "Host": fixtures.LIVE_HOST,
    "X-Original-Method": "GET",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Host": fixtures.LIVE_HOST,
    "X-Forwarded-For": "127.0.0.1",
    "X-Request-Id": "5f2b8c0e9d7a4b6c8e1f3a5d7b9c0e2f",
}


Measure = Callable[[], "tuple[Result, float]"]  # one measured row: wrk's result, server CPU µs/req


@dataclass
class Row:
    name: str
    result: Result | None = None
    cpu_us: float | None = None  # server CPU time per request (user + system), all its processes
    floor: str = "floor"  # the row this one is a ratio of
    target: float | None = None
    note: str = ""
    # Paired rounds (see `Bench.paired`): req/s and CPU µs per request of this row and of the floor
    # measured just before it, one tuple a round; the row's ratios are the medians of theirs.
    rounds: list[tuple[float, float, float, float]] = field(default_factory=list)


@dataclass
class Report:
    rows: dict[str, Row] = field(default_factory=dict)
    rss: dict[str, dict[str, float]] = field(default_factory=dict)  # by record count
    latency: dict[str, Latency] = field(default_factory=dict)  # "floor", "gateway"
    ingest: dict[str, Any] = field(default_factory=dict)
    visibility: dict[str, Any] = field(default_factory=dict)
    placement: str = ""
    seconds: float = 0.0
    elapsed: float = 0.0

    def add(self, key: str, row: Row) -> Row:
        self.rows[key] = row
        return row

    def ratio(self, row: Row) -> float | None:
        """req/s over the floor's: with paired rounds, the median of each round's ratio to the floor
        measured just before it; otherwise to the floor row."""
        if row.rounds:
            return statistics.median(rps / floor_rps for rps, _, floor_rps, _ in row.rounds if floor_rps)
        base = self.rows.get(row.floor)
        if row.result is None or base is None or base.result is None or not base.result.rps:
            return None
        return row.result.rps / base.result.rps

    def cpu_ratio(self, row: Row) -> float | None:
        """Floor CPU per request / this row's: what the ratio would be if both servers had their
        CPU to themselves. Steadier than req/s on a busy machine, where a pinned server does not
        always get its whole CPU."""
        if row.rounds:
            return statistics.median(floor_cpu / cpu for _, cpu, _, floor_cpu in row.rounds if cpu)
        base = self.rows.get(row.floor)
        if not row.cpu_us or base is None or not base.cpu_us:
            return None
        return base.cpu_us / row.cpu_us


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, from /proc/PID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def probe(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


class Bench:
    def __init__(self, directory: Path, placement: Placement, seconds: float, warmup: float) -> None:
        self.directory = directory
        self.tree = fixtures.REPO  # where the gateway under test is imported from
        self.placement = placement
        self.seconds = seconds
        self.warmup = warmup
        self.env = fixtures.server_env(directory)
        self.identity = fixtures.make_identity(directory)
        self.redis_url = ""
        self.redis_port = 0
        # Where presigned URLs point: nothing listens there except during the nginx row, whose
        # nginx plays S3 with a static 204 (the gateway itself never talks to S3).
        self.s3_port = free_port()
        self.s3_endpoint = f"http://127.0.0.1:{self.s3_port}"

    @contextmanager
    def redis(self) -> Iterator[redis.Redis]:
        port = free_port()
        data = self.directory / "redis"
        data.mkdir(exist_ok=True)
        with running(redis_command(port, data, self.placement.load), port=port):
            self.redis_url, self.redis_port = f"redis://127.0.0.1:{port}/0", port
            client = redis.Redis(port=port)
            try:
                yield client
            finally:
                client.close()

    @contextmanager
    def gateway(
        self, name: str, *, cache_ttl: int = 300, workers: int = 1, cpus: str | None = None
    ) -> Iterator[tuple[int, list[int]]]:
        """`asset-gateway serve` itself (the production entry); yields its port and server pids."""
        port = free_port()
        config = fixtures.write_config(
            self.directory, name, port=port, admin_port=free_port(), redis_url=self.redis_url,
            identity=self.identity, cache_ttl=cache_ttl, endpoint_url=self.s3_endpoint,
        )  # fmt: skip
        command = [PYTHON, "-m", "gateway", "serve", "--config", str(config), "--workers", str(workers)]
        log = self.directory / f"{name}.log"
        env = {**self.env, "PYTHONPATH": str(self.tree)}
        with running(pinned(cpus, command), port=port, env=env, log=log, cwd=str(self.tree)) as proc:
            time.sleep(0.3 if workers == 1 else 1.0)  # let every worker bind before load arrives
            pids = children(proc.pid) if workers > 1 else [proc.pid]
            yield port, pids or [proc.pid]

    @contextmanager
    def floor(self, location: str) -> Iterator[tuple[int, list[int]]]:
        port = free_port()
        command = pinned(self.placement.server, [PYTHON, "-m", "bench.floor", "--port", str(port),
                                                  "--location", location])  # fmt: skip
        with running(command, port=port, env=self.env, cwd=str(fixtures.REPO)) as proc:
            yield port, [proc.pid]

    def measure(
        self,
        port: int,
        pids: list[int],
        *,
        path: str = "/",
        headers: dict[str, str] | None = None,
        paths: list[str] | None = None,
        load_cpus: str | bool | None = True,
    ) -> tuple[Result, float]:
        """Warm up, then one measured wrk run; also the server's CPU time per request."""
        cpus = self.placement.load if load_cpus is True else (load_cpus or None)
        url = f"http://127.0.0.1:{port}{path}"
        common = {"directory": self.directory, "cpus": cpus, "headers": headers, "paths": paths}
        run_wrk(url, seconds=self.warmup, **common)  # type: ignore[arg-type]
        before = cpu_seconds(pids)
        result = run_wrk(url, seconds=self.seconds, **common)  # type: ignore[arg-type]
        used = cpu_seconds(pids) - before
        return result, (used / result.requests * 1e6) if result.requests else 0.0

    def paired(self, row: Row, rounds: int, floor: tuple[int, list[int]], measure: Measure) -> Row:
        """Measure `row` `rounds` times, each right after the floor (still running, on the same
        CPU): a machine whose speed drifts over minutes moves both halves of a pair alike. The row
        shows its median round; its ratios are the medians of the rounds' ratios."""
        floor_port, floor_pids = floor
        results = []
        for _ in range(rounds):
            floor_result, floor_cpu = self.measure(
                floor_port, floor_pids, path=FLOOR_PATH, headers=FLOOR_HEADERS
            )
            result, cpu = measure()
            results.append((result, cpu))
            row.rounds.append((result.rps, cpu, floor_result.rps, floor_cpu))
        results.sort(key=lambda pair: pair[0].rps)
        row.result, row.cpu_us = results[len(results) // 2]
        if rounds > 1:
            ratios = " ".join(f"{rps / floor_rps:.2f}" for rps, _, floor_rps, _ in row.rounds if floor_rps)
            row.note = f"{row.note + '; ' if row.note else ''}rounds: {ratios}"
        return row


def expect(port: int, path: str, headers: dict[str, str], status: int, what: str) -> dict[str, str]:
    got, answer = probe(port, path, headers)
    if got != status:
        raise RuntimeError(f"{what}: expected {status}, got {got} ({answer})")
    return answer


def sample_location(endpoint_url: str) -> str:
    """A presigned URL as long as the gateway's, for the floor's constant answer."""
    from botocore.credentials import Credentials

    from gateway.presign import Presigner
    from gateway.settings import S3Settings

    rec = fixtures.record(fixtures.PUBLIC_ID)
    presigner = Presigner(S3Settings(bucket="assets", region="eu-west-2", endpoint_url=endpoint_url),
                          Credentials("AKIABENCHMARKEXAMPLE", "bench-secret"))  # fmt: skip
    return presigner.presign(method="GET", object_key=rec.object_key, filename=rec.filename,
                             content_type=rec.content_type)  # fmt: skip


def run(args: argparse.Namespace) -> Report:
    started = time.monotonic()
    wanted = set(args.only.split(",")) if args.only else set(SCENARIOS)
    placement = Placement.detect()
    report = Report(placement=placement.describe(), seconds=args.seconds)
    live = {"Host": fixtures.LIVE_HOST}
    bearer = dict(live)
    public_path = fixtures.asset_path(fixtures.PUBLIC_ID)
    restricted_path = fixtures.asset_path(fixtures.RESTRICTED_ID)
    cold_paths = [fixtures.asset_path(fixtures.cold_id(n)) for n in range(COLD_ASSETS)]

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        bench = Bench(directory, placement, args.seconds, args.warmup)
        bearer["Authorization"] = f"Bearer {bench.identity.user_token}"
        client = stack.enter_context(bench.redis())
        fixtures.seed(client, [fixtures.PUBLIC_ID])
        fixtures.seed(client, [fixtures.RESTRICTED_ID], users=(fixtures.USER,))
        fixtures.seed(client, [fixtures.cold_id(n) for n in range(COLD_ASSETS)])
        say = print if not args.quiet else (lambda *a, **k: None)

        # Every ratio needs the floor, so it always runs, and keeps running for the paired rounds.
        say("floor: bare aiohttp constant 302 ...", flush=True)
        floor = stack.enter_context(bench.floor(sample_location(bench.s3_endpoint)))
        expect(floor[0], FLOOR_PATH, FLOOR_HEADERS, 302, "floor")
        result, cpu = bench.measure(*floor, path=FLOOR_PATH, headers=FLOOR_HEADERS)
        report.add("floor", Row("aiohttp floor (constant 302)", result, cpu, floor="floor"))
        rounds = max(1, args.rounds)

        def paired(key: str, row: Row, measure: Measure) -> None:
            report.add(key, bench.paired(row, rounds, floor, measure))

        main_tree = Path(args.tree).resolve() if args.tree else fixtures.REPO
        trees = [("", main_tree)]
        if args.baseline:
            trees.append((" [baseline]", Path(args.baseline).resolve()))
        if wanted & {"public", "restricted", "nginx", "auth"}:
            for label, tree in trees:
                bench.tree = tree
                key = "" if not label else "_baseline"
                with bench.gateway("warm", cpus=placement.server) as (port, pids):
                    at = functools.partial(bench.measure, port, pids)
                    answer = expect(port, public_path, live, 302, "warm public")
                    if "X-Amz-Signature=" not in answer.get("location", ""):
                        raise RuntimeError(f"warm public: not a presigned redirect: {answer}")
                    expect(port, restricted_path, bearer, 302, "warm restricted with token")
                    expect(port, restricted_path, live, 404, "warm restricted without token")
                    if wanted & {"public", "auth"}:
                        say(f"gateway: warm public{label} ...", flush=True)
                        row = Row(f"gateway warm public{label}", target=TARGETS["public"])
                        paired(f"public{key}", row, functools.partial(at, path=public_path, headers=live))
                    if "restricted" in wanted:
                        say(f"gateway: warm restricted, RS256 user token{label} ...", flush=True)
                        row = Row(
                            f"gateway warm restricted (RS256 token){label}", target=TARGETS["restricted"]
                        )
                        paired(
                            f"restricted{key}",
                            row,
                            functools.partial(at, path=restricted_path, headers=bearer),
                        )
                    if "auth" in wanted:
                        say(f"gateway: GET /auth as nginx asks it{label} ...", flush=True)
                        asked = {**AUTH_SUBREQUEST, "X-Original-URI": public_path}
                        answer = expect(port, "/auth", asked, 204, "GET /auth")
                        if "x-asset-location" not in answer:
                            raise RuntimeError(f"GET /auth: no X-Asset-Location: {answer}")
                        name = f"gateway GET /auth (nginx subrequest){label}"
                        row = Row(name, note="same process as warm public")
                        paired(f"auth{key}", row, functools.partial(at, path="/auth", headers=asked))
                    if "nginx" in wanted and not label:
                        nginx_rows(bench, report, port, pids, public_path, live, say)

        if "cold" in wanted:
            for label, tree in trees:
                bench.tree = tree
                key = "" if not label else "_baseline"
                say(f"gateway: cold, cache off, {COLD_ASSETS} assets through Redis{label} ...", flush=True)
                with bench.gateway("cold", cache_ttl=0, cpus=placement.server) as (port, pids):
                    expect(port, cold_paths[0], live, 302, "cold")
                    row = Row(
                        f"gateway cold ({COLD_ASSETS} ids, Redis read each){label}", target=TARGETS["cold"]
                    )
                    measure = functools.partial(
                        bench.measure, port, pids, path="/", headers=live, paths=cold_paths
                    )
                    paired(f"cold{key}", row, measure)
        bench.tree = fixtures.REPO

        if "workers" in wanted:
            for workers in (1, 2):
                say(f"gateway: warm public, --workers {workers}, nothing pinned ...", flush=True)
                with bench.gateway(f"workers{workers}", workers=workers) as (port, pids):
                    expect(port, public_path, live, 302, f"workers {workers}")
                    result, cpu = bench.measure(port, pids, path=public_path, headers=live, load_cpus=None)
                    report.add(f"workers{workers}", Row(
                        f"gateway warm public, --workers {workers} (unpinned)", result, cpu,
                        floor="workers1" if workers == 2 else "floor",
                        note="ratio to --workers 1" if workers == 2 else "shares 2 CPUs with wrk",
                    ))  # fmt: skip

        if "latency" in wanted:
            report.latency = open_loop(bench, report, public_path, live, say)

        if wanted & set(RSS_SIZES):
            sizes = memory.Memory(client, directory, bench.redis_url, bench.identity, bench.env)
            for name, records in RSS_SIZES.items():
                if name in wanted:
                    say(f"gateway: RSS holding {records:,} cached records, Redis memory ...", flush=True)
                    report.rss[str(records)] = sizes.measure(records)

        if "ingest" in wanted:
            say(f"asset import and reconcile of {INGEST_RECORDS:,} records ...", flush=True)
            report.ingest = ingest.measure(
                directory, bench.redis_port, bench.identity, bench.env, INGEST_RECORDS
            )

        if "visibility" in wanted:
            say(f"two gateways: publish->visible over {VISIBILITY_WRITES} writes ...", flush=True)
            report.visibility = visibility.measure(directory, bench.redis_url, VISIBILITY_WRITES)
    report.elapsed = time.monotonic() - started
    return report


def open_loop(
    bench: Bench, report: Report, path: str, live: dict[str, str], say: Callable[..., None]
) -> dict[str, Latency]:
    """The floor, then the warm gateway, each at half the floor's closed-loop req/s (measured first
    by the floor row): latency where neither is saturated, as a site sees it."""
    floor = report.rows["floor"].result
    assert floor is not None
    rate = floor.rps / 2
    load = functools.partial(
        run_h2load, rate=rate, seconds=bench.seconds, warmup=bench.warmup, directory=bench.directory,
        cpus=bench.placement.load, host=live["Host"],
    )  # fmt: skip
    found: dict[str, Latency] = {}
    say(f"open loop: floor, then gateway warm public, at {rate:.0f} req/s (h2load) ...", flush=True)
    with bench.floor(sample_location(bench.s3_endpoint)) as (port, _):
        found["floor"] = load(f"http://127.0.0.1:{port}{path}")
    with bench.gateway("latency", cpus=bench.placement.server) as (port, _):
        expect(port, path, live, 302, "open-loop gateway")
        found["gateway"] = load(f"http://127.0.0.1:{port}{path}")
    return found


NGINX_STATIC = """
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 204; }}
    }}
"""
NGINX_TEMPLATE = fixtures.REPO / "nginx" / "auth_request.conf.template"
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render_template(text: str, values: dict[str, str]) -> str:
    """envsubst restricted to our names: `${NAME}` replaced, nginx's own `$name` left alone."""
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def nginx_rows(
    bench: Bench,
    report: Report,
    gateway_port: int,
    gateway_pids: list[int],
    path: str,
    live: dict[str, str],
    say: Callable[..., None],
) -> None:
    """nginx answering a static 204, then the shipped auth_request config in front of the gateway,
    with the same nginx playing S3 (a static 204 for the presigned URL it fetches)."""
    static_name, auth_name = "nginx static 204", "nginx auth_request -> gateway (warm public)"
    if find_binary("nginx") is None:
        report.add("nginx_static", Row(static_name, note="n/a: nginx is not installed"))
        report.add("nginx_auth", Row(auth_name, note="n/a: nginx is not installed"))
        return
    say("nginx: static 204 ...", flush=True)
    port = free_port()
    command = nginx_command(bench.directory, "static", NGINX_STATIC.format(port=port), bench.placement.load)
    with running(command, port=port):
        expect(port, path, live, 204, "nginx static")
        result, _ = bench.measure(port, [], path=path, headers=live)
    report.add("nginx_static", Row(static_name, result, None, floor="nginx_static",
                                   note="nginx on the wrk CPU"))  # fmt: skip
    asked = {**live, "X-Original-URI": path, "X-Original-Method": "GET"}
    status, answer = probe(gateway_port, "/auth", asked)
    if status != 204 or "x-asset-location" not in answer or not NGINX_TEMPLATE.exists():
        why = "no nginx/auth_request.conf.template" if status == 204 else f"GET /auth answered {status}"
        report.add("nginx_auth", Row(auth_name, note=f"n/a: {why}"))
        return
    say("nginx: auth_request -> gateway ...", flush=True)
    port = free_port()
    site = render_template(NGINX_TEMPLATE.read_text(), {
        "ASSET_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "ASSET_GATEWAY_SERVER_NAMES": f"{fixtures.LIVE_HOST} {fixtures.DRAFT_HOST}",
        "ASSET_GATEWAY_UPSTREAM": f"127.0.0.1:{gateway_port}",
        "ASSET_GATEWAY_RESOLVER": "127.0.0.1",
        "ASSET_GATEWAY_ACCESS_LOG": str(bench.directory / "nginx-access.log"),
        "ASSET_GATEWAY_TLS": "",
    })  # fmt: skip
    # wrk is one client address: the template's per-client limits would answer it 429 at once.
    site = "\n".join(
        line for line in site.splitlines() if not line.strip().startswith(("limit_req ", "limit_conn "))
    )
    body = site + NGINX_STATIC.format(port=bench.s3_port)
    command = nginx_command(bench.directory, "auth", body, bench.placement.load)
    with running(command, port=port):
        expect(port, path, live, 204, "nginx auth_request (S3 played by a static 204)")
        result, cpu = bench.measure(port, gateway_pids, path=path, headers=live)
    note = "shipped nginx/auth_request.conf.template; cpu: gateway only"
    report.add("nginx_auth", Row(auth_name, result, cpu, floor="nginx_static", note=note))


# ---- output


def machine() -> dict[str, str]:
    import aiohttp

    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }


def table(report: Report) -> str:
    lines = [
        f"{'scenario':46} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'target':>7} "
        f"{'cpu µs/req':>10} {'cpu ratio':>9}",
        "-" * 108,
    ]
    for row in report.rows.values():
        if row.result is None:
            lines.append(f"{row.name:46} {row.note}")
            continue
        r = row.result
        ratio = report.ratio(row)
        verdict = ""
        if row.target is not None and ratio is not None:
            verdict = f"{row.target:.2f}{'✓' if ratio >= row.target else '✗'}"
        cpu = f"{row.cpu_us:.0f}" if row.cpu_us else "-"
        cpu_ratio = report.cpu_ratio(row)
        cpu_ratio_text = f"{cpu_ratio:.2f}" if cpu_ratio is not None and row.floor == "floor" else "-"
        base = "" if row.floor == "floor" else f" (of {row.floor})"
        errors = "" if r.clean else f"  ERRORS: {r.status_errors} bad statuses, {r.socket_errors} socket"
        p99_mark = "" if r.p99_ms < P99_TARGET_MS else "!"
        lines.append(
            f"{row.name:46} {r.rps:8.0f} {r.p50_ms:7.2f} {r.p99_ms:6.2f}{p99_mark or ' '} "
            f"{(f'{ratio:.2f}' if ratio is not None else '-'):>6} {verdict:>7} {cpu:>10} {cpu_ratio_text:>9}"
            f"{base}{'  ' + row.note if row.note else ''}{errors}"
        )
    lines.extend(describe_latency(name, latency) for name, latency in report.latency.items())
    lines.extend(memory.describe(rss) for rss in report.rss.values())
    if report.ingest:
        lines.append(ingest.describe(report.ingest))
    if report.visibility:
        lines.append(visibility.describe(report.visibility))
    lines.append(f"placement: {report.placement}; {report.seconds:g} s per row after warm-up; "
                 f"32 connections, wrk -t1; p99 target < {P99_TARGET_MS:g} ms (! = missed)")  # fmt: skip
    lines += ["", f"{'target':58} {'measured':>9}  {'target':>8}", "-" * 80]
    for check in checks(report):
        digits = 0 if check.unit else 2  # bytes whole, ratios to two places
        value = "-" if check.value is None else f"{check.value:.{digits}f}{check.unit}"
        bound = f"{'≥' if check.at_least else '≤'} {check.target:.{digits}f}{check.unit}"
        lines.append(f"{check.name:58} {value:>9}  {bound:>8} {check.verdict}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Check:
    """One row of the performance targets: a measured value against its bound."""

    name: str
    value: float | None  # None: not measured in this run (or not measurable)
    target: float
    at_least: bool  # True: the value must reach the target; False: stay at or under it
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.at_least else self.value <= self.target

    @property
    def verdict(self) -> str:
        return {True: "✓", False: "✗", None: "not run"}[self.met]


def checks(report: Report) -> list[Check]:
    """Every performance target (docs/benchmarks.md), measured or not in this run."""
    names = {"public": "warm public / floor (req/s)", "restricted": "warm restricted (RS256 Bearer) / floor",
             "cold": "cold (cache off, Redis read + decode) / floor"}  # fmt: skip
    found = []
    for key, target in TARGETS.items():
        row = report.rows.get(key)
        found.append(Check(names[key], report.ratio(row) if row else None, target, at_least=True))
    auth, media = report.rows.get("auth"), report.rows.get("public")
    # Each row's CPU against the floor measured just before it, over the other's: the rounds' pairs
    # keep the machine's drift out of it.
    auth_cpu, media_cpu = (
        (report.cpu_ratio(auth), report.cpu_ratio(media)) if auth and media else (None, None)
    )
    cpu = media_cpu / auth_cpu if auth_cpu and media_cpu else None
    found.append(Check("gateway CPU per /auth / per warm /media", cpu, AUTH_CPU_TARGET, at_least=False))
    for records in RSS_SIZES.values():
        rss = report.rss.get(str(records))
        found.append(Check(f"RSS per cached record at {records:,} records", rss and rss["bytes_per_record"],
                           RSS_TARGET_BYTES, at_least=False, unit=" B"))  # fmt: skip
    floor, gateway = report.latency.get("floor"), report.latency.get("gateway")
    rate = f"{floor.rate:.0f} req/s" if floor else "half floor rate"
    p99 = gateway.p99_ms / floor.p99_ms if floor and gateway else None
    name = f"open loop at {rate}: gateway p99 / floor p99"
    found.append(Check(name, p99, LATENCY_P99_TARGET, at_least=False))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds before each row")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help="paired rounds (floor, then the row) of each row with a target")  # fmt: skip
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)} (floor always runs)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--baseline", help="a copy of the tree to measure each gateway row against (A/B)")
    parser.add_argument("--tree", help="measure the gateway from this copy of the tree instead of this one")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    args = parser.parse_args()
    report = run(args)
    info = machine()
    print()
    print(f"machine: {info['cpus']} CPUs, {info['cpu_model']}; Python {info['python']}, "
          f"aiohttp {info['aiohttp']}; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(table(report))
    print(f"total {report.elapsed:.0f} s")
    if args.json:
        data = {
            "machine": info,
            "rows": {
                k: {**asdict(v), "ratio": report.ratio(v), "cpu_ratio": report.cpu_ratio(v)}
                for k, v in report.rows.items()
            },
            "rss": report.rss,
            "latency": {k: asdict(v) for k, v in report.latency.items()},
            "ingest": report.ingest,
            "checks": [{**asdict(c), "met": c.met} for c in checks(report)],
            "visibility": report.visibility,
            "placement": report.placement,
        }
        Path(args.json).write_text(json.dumps(data, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
