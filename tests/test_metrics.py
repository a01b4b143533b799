"""gateway/metrics.py and the admin listener's /metrics, /healthz and /readyz: the exposition text is
valid Prometheus, counters move with real requests through a real gateway over real Redis, workers'
counts add up, and readiness follows Redis."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from gateway.app import create_admin_app
from gateway.http.context import Gateway
from gateway.http.runner import GatewayRunner
from gateway.metrics import (
    CONTENT_TYPE,
    FAMILIES,
    LATENCY_BUCKETS,
    Counts,
    Metrics,
    PolicyState,
    SnapshotDirectory,
    policy_state,
    render,
)
from gateway.policy.language import Problem
from gateway.policy.reload import CurrentPolicy
from tests.http.conftest import LIVE, Keys, gateway_settings, start_gateway
from tests.http.conftest import keys as keys  # fixtures, re-exported for this module
from tests.http.conftest import user_key_pair as user_key_pair
from tests.servers import RedisServer, S3Server, free_port, wait_for_port

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Exposition text → {(name, labels): value}; fails on any line that is not valid."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = frozenset(
            (m["key"], m["value"].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for m in _LABEL.finditer(match["labels"] or "")
        )
        name = match["name"]
        assert name in typed or re.sub(r"_(bucket|sum|count)$", "", name) in typed, name
        samples[(name, labels)] = float(match["value"])
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


# ---- the exposition, without a server


def test_render_is_valid_exposition_with_escaped_labels() -> None:
    metrics = Metrics()
    metrics.observe("media", "deny", 'rule "quoted"\\ and\nnewline', 404, 0.0002)
    metrics.observe("media", "serve", "serve", 302, 0.003)
    metrics.observe("media", "serve", "serve", 302, 7.0)
    metrics.store_error()
    text = render(metrics.snapshot(reload_failures=2), PolicyState("rev-1", 2), started=1700000000.5)
    samples = parse(text)
    assert value(samples, "asset_gateway_requests_total", rule="serve", status="302") == 2
    assert value(samples, "asset_gateway_requests_total", rule='rule "quoted"\\ and\nnewline') == 1
    assert value(samples, "asset_gateway_store_errors_total") == 1
    assert value(samples, "asset_gateway_policy_info", revision="rev-1") == 1
    assert value(samples, "asset_gateway_policy_reload_failures_total") == 2
    assert value(samples, "process_start_time_seconds") == 1700000000.5
    # the histogram is cumulative, ends in +Inf, and +Inf equals the count
    buckets = [
        (labels, v)
        for (name, labels), v in samples.items()
        if name == "asset_gateway_decision_duration_seconds_bucket"
    ]
    bounds = sorted((float(dict(labels)["le"]), v) for labels, v in buckets)
    assert [b for b, _ in bounds] == [*LATENCY_BUCKETS, math.inf]
    counts = [v for _, v in bounds]
    assert counts == sorted(counts)
    assert dict(bounds)[0.00025] == 1 and dict(bounds)[0.005] == 2 and dict(bounds)[math.inf] == 3
    assert value(samples, "asset_gateway_decision_duration_seconds_count", endpoint="media") == 3
    assert value(samples, "asset_gateway_decision_duration_seconds_sum") == pytest.approx(7.0032)


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    metrics = Metrics()
    metrics.observe("auth", "serve", "serve", 204, 0.001)
    samples = parse(render(metrics.snapshot(), PolicyState("r", 0), 0.0))
    assert value(samples, "asset_gateway_decision_duration_seconds_bucket", le="0.001") == 1
    assert value(samples, "asset_gateway_decision_duration_seconds_bucket", le="0.0005") == 0


@dataclass
class _Cache:
    hits: int
    misses: int
    size: int

    def __len__(self) -> int:
        return self.size


def test_workers_publish_and_any_worker_adds_the_others(tmp_path: Path) -> None:
    workers = [Metrics() for _ in range(3)]
    for n, metrics in enumerate(workers):
        for _ in range(n + 1):
            metrics.observe("media", "serve", "serve", 302, 0.001)
        metrics.store_error()
    directories = [SnapshotDirectory(tmp_path, n) for n in range(3)]
    for n, (metrics, directory) in enumerate(zip(workers, directories, strict=True)):
        directory.publish(metrics.snapshot(_Cache(hits=10 * n, misses=n, size=5)))
    (tmp_path / "worker-9.json").write_text("{not json")  # a torn or foreign file is skipped
    others, read = directories[0].others()
    assert read == 2
    mine = workers[0].snapshot(_Cache(hits=0, misses=0, size=5))
    mine.merge(others)
    samples = parse(render(mine, PolicyState("r", 0), 0.0, workers=read + 1))
    assert value(samples, "asset_gateway_requests_total") == 1 + 2 + 3
    assert value(samples, "asset_gateway_decision_duration_seconds_count") == 6
    assert value(samples, "asset_gateway_store_errors_total") == 3
    assert value(samples, "asset_gateway_cache_hits_total") == 30
    assert value(samples, "asset_gateway_cache_entries") == 15
    assert value(samples, "asset_gateway_workers") == 3


def test_counts_survive_their_json_form() -> None:
    metrics = Metrics()
    metrics.observe("auth", "login", "draft_host_login", 401, 0.02)
    counts = metrics.snapshot(_Cache(1, 2, 3))
    assert Counts.from_json(counts.to_json()) == counts


def test_worker_counts_of_every_kind_add_up() -> None:
    """Counters and process figures are sums over workers; the start time is the earliest and the
    newest invalidation the latest of any worker."""
    parts = []
    for n in range(3):
        metrics = Metrics()
        metrics.token_rejected("user", "expired")
        metrics.admin_write("applied")
        counts = metrics.snapshot(
            reload_failures=n, invalidations=_Listener(received=n, last_received=100.0 + n)
        )
        counts.started = 1000.0 + n
        parts.append(counts)
    total = Counts()
    for counts in parts:
        total.merge(Counts.from_json(counts.to_json()))
    samples = parse(render(total, PolicyState("r", 0), math.inf, workers=3, version="1.2.3", now=110.0))
    assert value(samples, "asset_gateway_token_rejections_total", source="user", reason="expired") == 3
    assert value(samples, "asset_gateway_admin_writes_total", result="applied") == 3
    assert value(samples, "asset_gateway_policy_reload_failures_total") == 0 + 1 + 2
    assert value(samples, "asset_gateway_invalidation_messages_total") == 3
    assert value(samples, "asset_gateway_invalidation_last_message_age_seconds") == 110.0 - 102.0
    assert value(samples, "process_start_time_seconds") == 1000.0
    assert value(samples, "process_open_fds") == sum(c.open_fds for c in parts) > 3
    assert value(samples, "process_resident_memory_bytes") == sum(c.resident_bytes for c in parts) > 0
    assert value(samples, "asset_gateway_build_info", version="1.2.3") == 1


def test_no_invalidation_yet_means_no_age_sample() -> None:
    samples = parse(render(Metrics().snapshot(), PolicyState("r", 0), 0.0))
    assert not [key for key in samples if key[0] == "asset_gateway_invalidation_last_message_age_seconds"]


def test_every_family_rendered_is_declared_and_every_declared_one_rendered() -> None:
    text = render(Metrics().snapshot(), PolicyState("r", 0), 0.0)
    typed = {line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert typed == set(FAMILIES)


@dataclass
class _Listener:
    received: int
    last_received: float


def test_policy_state_reads_what_the_current_policy_has() -> None:
    current = CurrentPolicy(Path(__file__).resolve().parents[1] / "policies")
    assert policy_state(current) == PolicyState(current.policy.revision, 0)
    current.reload_failures = 4
    assert policy_state(current) == PolicyState(current.policy.revision, 4)
    current.last_error = [Problem("default.yaml", 3, "bad")]  # a failed reload: the old revision serves
    assert policy_state(current) == PolicyState(current.policy.revision, 4, failing=True)


# ---- over HTTP: a real gateway (public + admin listeners) over real Redis


@dataclass
class Listeners:
    public_url: str
    admin_url: str
    gateway: Gateway
    session: ClientSession

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        async with self.session.get(f"{self.admin_url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            return parse(await response.text())

    async def get(self, path: str, **headers: str) -> int:
        async with self.session.get(
            self.public_url + path, headers={"Host": LIVE, **headers}, allow_redirects=False
        ) as response:
            return response.status


@pytest.fixture
async def listeners(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[Listeners]:
    settings = gateway_settings(redis_url, s3_server, keys)
    public, gateway, _, public_url = await start_gateway(settings, s3_server)
    admin = GatewayRunner(create_admin_app(gateway))
    await admin.setup()
    port = free_port()
    await web.TCPSite(admin, "127.0.0.1", port).start()
    try:
        async with ClientSession() as session:
            yield Listeners(public_url, f"http://127.0.0.1:{port}", gateway, session)
    finally:
        await admin.cleanup()
        await public.cleanup()


async def test_metrics_counters_move_with_requests(listeners: Listeners) -> None:
    before = await listeners.metrics()
    assert await listeners.get("/media/nothere/f.pdf") == 404
    assert await listeners.get("/media/nothere/f.pdf") == 404
    assert await listeners.get("/not/an/asset") == 404
    after = await listeners.metrics()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "asset_gateway_requests_total"
    assert moved(requests, endpoint="media", outcome="deny", rule="missing_record", status="404") == 2
    assert moved(requests, endpoint="media", outcome="not_found", rule="", status="404") == 1
    assert moved("asset_gateway_decision_duration_seconds_count", endpoint="media") == 3
    store = listeners.gateway.store
    assert value(after, "asset_gateway_cache_hits_total") == store.hits
    assert value(after, "asset_gateway_cache_misses_total") == store.misses
    assert moved("asset_gateway_cache_hits_total") + moved("asset_gateway_cache_misses_total") == 2
    revision = listeners.gateway.policy.policy.revision
    assert value(after, "asset_gateway_policy_info", revision=revision) == 1
    assert value(after, "asset_gateway_policy_reload_failures_total") == 0
    assert value(after, "asset_gateway_build_info") == 1
    assert value(after, "process_cpu_seconds_total") > 0
    assert value(after, "process_open_fds") > 0


async def test_refused_tokens_are_counted_by_source_and_reason(listeners: Listeners, keys: Keys) -> None:
    expired = keys.user_token("u1", ttl=-3600)
    assert await listeners.get("/media/nothere/f.pdf", Authorization=f"Bearer {expired}") == 404
    assert await listeners.get("/media/nothere/f.pdf?token=not-a-jwt") == 404
    samples = await listeners.metrics()
    rejections = "asset_gateway_token_rejections_total"
    assert value(samples, rejections, source="user", reason="expired") == 1
    assert value(samples, rejections, source="preview", reason="malformed") == 1
    assert value(samples, rejections) == 2


async def test_metrics_count_auth_subrequests(listeners: Listeners) -> None:
    async with listeners.session.get(
        f"{listeners.public_url}/auth", headers={"Host": LIVE, "X-Original-URI": "/media/nothere/f.pdf"}
    ) as response:
        assert response.status == 403
    samples = await listeners.metrics()
    assert value(samples, "asset_gateway_requests_total", endpoint="auth", rule="missing_record") == 1


async def test_redis_down_counts_store_errors_and_turns_readyz_unready(
    listeners: Listeners, redis_server: RedisServer
) -> None:
    async with listeners.session.get(f"{listeners.admin_url}/readyz") as response:
        assert response.status == 200
    redis_server.stop()
    try:
        assert await listeners.get("/media/cold1/f.pdf") == 503
        async with listeners.session.get(f"{listeners.admin_url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["checks"]["state"] == "unreachable"
        async with listeners.session.get(f"{listeners.admin_url}/healthz") as response:
            assert response.status == 200  # alive, just not ready
        samples = await listeners.metrics()
        assert value(samples, "asset_gateway_store_errors_total") == 1
        assert value(samples, "asset_gateway_requests_total", outcome="store_unavailable", status="503") == 1
    finally:
        redis_server.start()
    async with listeners.session.get(f"{listeners.admin_url}/readyz") as response:
        assert response.status == 200


async def test_metrics_and_probes_need_no_token_but_the_rest_does(listeners: Listeners) -> None:
    for path in ("/metrics", "/healthz"):
        async with listeners.session.get(listeners.admin_url + path) as response:
            assert response.status == 200, path
    async with listeners.session.get(f"{listeners.admin_url}/assets/x") as response:
        assert response.status == 401


# ---- `serve --workers 2`: one scrape covers both workers


def test_a_scrape_of_any_worker_counts_every_worker(tmp_path: Path) -> None:
    public, admin = free_port(), free_port()
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[1] / "policies", policies)
    environ = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "GATEWAY_STATE_URL": "memory://",
        "GATEWAY_SERVER_PORT": str(public),
        "GATEWAY_ADMIN_PORT": str(admin),
        "GATEWAY_POLICIES_DIR": str(policies),
        "GATEWAY_HOSTS_LIVE": LIVE,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--workers", "2"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(public)
        wait_for_port(admin)
        for n in range(30):  # new connections: the kernel spreads them over both workers
            request = urllib.request.Request(
                f"http://127.0.0.1:{public}/media/m{n}/f.pdf", headers={"Host": LIVE}
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=5)
            assert answer.value.code == 404
            answer.value.close()
        # Workers publish once a second: poll until every scrape, whichever worker answers, adds up.
        deadline = time.monotonic() + 10
        totals: list[float] = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
                samples = parse(response.read().decode())
            totals.append(value(samples, "asset_gateway_requests_total", rule="missing_record"))
            if totals[-3:] == [30, 30, 30] and value(samples, "asset_gateway_workers") == 2:
                break
            time.sleep(0.05)
        assert totals[-3:] == [30, 30, 30], totals
        assert value(samples, "asset_gateway_policy_reload_failing") == 0
        # A broken policy edit: each worker refuses it, and the host's counter has both refusals.
        (policies / "zz-broken.yaml").write_text("rules: [\n")
        deadline = time.monotonic() + 10
        failures: list[float] = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
                samples = parse(response.read().decode())
            failures.append(value(samples, "asset_gateway_policy_reload_failures_total"))
            if failures[-3:] == [2, 2, 2]:
                break
            time.sleep(0.05)
        assert failures[-3:] == [2, 2, 2], failures
        assert value(samples, "asset_gateway_policy_reload_failing") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
