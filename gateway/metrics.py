"""Prometheus metrics for one process, in the text exposition format (version 0.0.4), written by hand:
counting a request is a dict update and a bisect, with no dependency on the hot path.

Counters live in the process that served the request. With `--workers N` each worker keeps its own;
the scrape endpoint merges every worker's published snapshot (see `SnapshotDirectory`), so one scrape
of the admin port shows the whole host whichever worker the kernel hands it to: counters and process
figures (CPU, memory, open files) are the sum over workers, the start time the earliest.

`FAMILIES` declares every family exported here; alert rules and dashboards are tested against it.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import resource
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.policy.reload import CurrentPolicy

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Decisions take tens of microseconds warm and milliseconds when Redis is read; the upper buckets
# catch a slow Redis or a stalled event loop.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

# From a write to the CDN confirming its purge (gateway.cdn): milliseconds when all is well,
# minutes while a CDN is down.
PURGE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip

RequestKey = tuple[str, str, str, str]  # endpoint, outcome, rule, status

# Every metric family this module exports: name → (type, help). `render` writes only these.
FAMILIES: dict[str, tuple[str, str]] = {
    "asset_gateway_requests_total": (
        "counter",
        "Answers given, by endpoint (media, auth), outcome, deciding rule and HTTP status.",
    ),
    "asset_gateway_decision_duration_seconds": (
        "histogram",
        "Time from a request's arrival to its answer being ready (parse, identify, lookup, decide, respond).",
    ),
    "asset_gateway_store_errors_total": (
        "counter",
        "Requests that could not read the state store (Redis unreachable or timing out).",
    ),
    "asset_gateway_cache_hits_total": ("counter", "Record lookups answered from the in-process cache."),
    "asset_gateway_cache_misses_total": ("counter", "Record lookups that had to ask the state store."),
    "asset_gateway_cache_entries": ("gauge", "Records held in the in-process caches."),
    "asset_gateway_token_rejections_total": (
        "counter",
        "Presented tokens that were refused, by source (user, preview) and reason (expired, ...).",
    ),
    "asset_gateway_admin_writes_total": (
        "counter",
        "Admin API writes, by result (applied, unchanged, stale, raced, legacy_path_taken, "
        "store_unavailable).",
    ),
    "asset_gateway_invalidation_messages_total": (
        "counter",
        "Invalidation messages (asset ids written anywhere) received on the Redis channel.",
    ),
    "asset_gateway_invalidation_last_message_age_seconds": (
        "gauge",
        "Seconds since the newest invalidation message any worker received (absent before the first).",
    ),
    "asset_gateway_policy_info": ("gauge", "The policy revision in force (always 1)."),
    "asset_gateway_policy_reload_failures_total": (
        "counter",
        "Policy reloads refused because the edited files were invalid (the last good policy stays).",
    ),
    "asset_gateway_purge_queue_length": (
        "gauge",
        "CDN purges enqueued and not yet confirmed by the CDN (the whole shared queue).",
    ),
    "asset_gateway_purge_oldest_pending_seconds": (
        "gauge",
        "Age of the oldest CDN purge not yet confirmed; 0 when the queue is empty.",
    ),
    "asset_gateway_purges_sent_total": ("counter", "CDN purges the CDN confirmed, by adapter."),
    "asset_gateway_purges_failed_total": (
        "counter",
        "CDN purge attempts the CDN did not confirm (each is retried), by adapter.",
    ),
    "asset_gateway_purge_seconds": (
        "histogram",
        "Seconds from the write that asked for a CDN purge to the CDN confirming it.",
    ),
    "asset_gateway_policy_reload_failing": (
        "gauge",
        "1 while the policy files on disk are invalid and an older revision serves, else 0.",
    ),
    "asset_gateway_build_info": ("gauge", "The running release (always 1)."),
    "asset_gateway_workers": ("gauge", "Worker processes whose counts this answer includes."),
    "process_cpu_seconds_total": ("counter", "User and system CPU time spent by the worker processes."),
    "process_resident_memory_bytes": ("gauge", "Resident memory of the worker processes, added up."),
    "process_open_fds": ("gauge", "Open file descriptors of the worker processes, added up."),
    "process_start_time_seconds": ("gauge", "Start time of the oldest worker since the Unix epoch."),
}


class _CacheStats(Protocol):
    hits: int
    misses: int

    def __len__(self) -> int: ...


class _InvalidationStats(Protocol):
    received: int
    last_received: float  # Unix time of the newest message, 0 before the first


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (not cumulative: the exposition sums them), plus the sum and the count."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def merge(self, other: Histogram) -> None:
        if other.buckets != self.buckets:
            return  # a worker from another release with other buckets: leave it out rather than lie
        for index, value in enumerate(other.counts):
            self.counts[index] += value
        self.total += other.total
        self.count += other.count


@dataclass(slots=True)
class Counts:
    """Everything a process counts by itself; the parts that can be added across workers."""

    requests: dict[RequestKey, int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)  # by endpoint
    store_errors: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_entries: int = 0
    purges: dict[tuple[str, str], int] = field(default_factory=dict)  # (adapter, sent|failed)
    purge_latency: Histogram = field(default_factory=lambda: _histogram(PURGE_BUCKETS))
    # The shared purge queue as this process last saw it: the same for every worker, so merged
    # with max, not added up.
    purge_queue_length: int = 0
    purge_oldest_pending: float = 0.0
    token_rejections: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, reason)
    admin_writes: dict[str, int] = field(default_factory=dict)  # by result
    invalidation_messages: int = 0
    last_invalidation: float = 0.0  # Unix time of the newest message; 0 before the first
    reload_failures: int = 0
    cpu_seconds: float = 0.0
    resident_bytes: int = 0
    open_fds: int = 0
    started: float = math.inf  # the earliest start time among the processes counted

    def merge(self, other: Counts) -> None:
        for key, value in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + value
        for endpoint, histogram in other.latency.items():
            mine = self.latency.get(endpoint)
            if mine is None:
                mine = self.latency[endpoint] = Histogram(histogram.buckets)
                mine.counts = [0] * len(histogram.counts)
            mine.merge(histogram)
        self.store_errors += other.store_errors
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.cache_entries += other.cache_entries
        for purge_key, count in other.purges.items():
            self.purges[purge_key] = self.purges.get(purge_key, 0) + count
        self.purge_latency.merge(other.purge_latency)
        self.purge_queue_length = max(self.purge_queue_length, other.purge_queue_length)
        self.purge_oldest_pending = max(self.purge_oldest_pending, other.purge_oldest_pending)
        for pair, value in other.token_rejections.items():
            self.token_rejections[pair] = self.token_rejections.get(pair, 0) + value
        for result, value in other.admin_writes.items():
            self.admin_writes[result] = self.admin_writes.get(result, 0) + value
        self.invalidation_messages += other.invalidation_messages
        self.last_invalidation = max(self.last_invalidation, other.last_invalidation)
        self.reload_failures += other.reload_failures
        self.cpu_seconds += other.cpu_seconds
        self.resident_bytes += other.resident_bytes
        self.open_fds += other.open_fds
        self.started = min(self.started, other.started)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": [[*key, value] for key, value in self.requests.items()],
            "latency": {
                endpoint: {"buckets": h.buckets, "counts": h.counts, "sum": h.total, "count": h.count}
                for endpoint, h in self.latency.items()
            },
            "store_errors": self.store_errors,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_entries": self.cache_entries,
            "purges": [[*key, value] for key, value in self.purges.items()],
            "purge_latency": {
                "counts": self.purge_latency.counts,
                "sum": self.purge_latency.total,
                "count": self.purge_latency.count,
            },
            "purge_queue": [self.purge_queue_length, self.purge_oldest_pending],
            "token_rejections": [[*pair, value] for pair, value in self.token_rejections.items()],
            "admin_writes": self.admin_writes,
            "invalidation_messages": self.invalidation_messages,
            "last_invalidation": self.last_invalidation,
            "reload_failures": self.reload_failures,
            "cpu_seconds": self.cpu_seconds,
            "resident_bytes": self.resident_bytes,
            "open_fds": self.open_fds,
            "started": self.started if math.isfinite(self.started) else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counts:
        counts = cls(
            store_errors=int(data["store_errors"]),
            cache_hits=int(data["cache_hits"]),
            cache_misses=int(data["cache_misses"]),
            cache_entries=int(data["cache_entries"]),
            invalidation_messages=int(data.get("invalidation_messages", 0)),
            last_invalidation=float(data.get("last_invalidation", 0.0)),
            reload_failures=int(data.get("reload_failures", 0)),
            cpu_seconds=float(data.get("cpu_seconds", 0.0)),
            resident_bytes=int(data.get("resident_bytes", 0)),
            open_fds=int(data.get("open_fds", 0)),
            started=float(data.get("started") or math.inf),
        )
        for adapter, result, value in data.get("purges", ()):
            counts.purges[(str(adapter), str(result))] = int(value)
        latency = data.get("purge_latency")
        if latency and len(latency["counts"]) == len(PURGE_BUCKETS) + 1:
            buckets = [int(c) for c in latency["counts"]]
            counts.purge_latency = Histogram(
                PURGE_BUCKETS, buckets, float(latency["sum"]), int(latency["count"])
            )
        length, oldest = data.get("purge_queue", (0, 0.0))
        counts.purge_queue_length, counts.purge_oldest_pending = int(length), float(oldest)
        for source, reason, value in data.get("token_rejections", []):
            counts.token_rejections[(str(source), str(reason))] = int(value)
        for result, value in data.get("admin_writes", {}).items():
            counts.admin_writes[str(result)] = int(value)
        for endpoint, outcome, rule, status, value in data["requests"]:
            counts.requests[(str(endpoint), str(outcome), str(rule), str(status))] = int(value)
        for endpoint, h in data["latency"].items():
            counts.latency[str(endpoint)] = Histogram(
                tuple(float(b) for b in h["buckets"]),
                [int(c) for c in h["counts"]],
                float(h["sum"]),
                int(h["count"]),
            )
        return counts


class Metrics:
    """The counters one process updates per request. Not thread-safe: one event loop owns it."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.started = time.time()
        # Set by the server when it runs several workers: where they publish their counts.
        self.snapshots: SnapshotDirectory | None = None

    def observe(self, endpoint: str, outcome: str, rule: str, status: int, seconds: float) -> None:
        key = (endpoint, outcome, rule, str(status))
        requests = self.counts.requests
        requests[key] = requests.get(key, 0) + 1
        histogram = self.counts.latency.get(endpoint)
        if histogram is None:
            histogram = self.counts.latency[endpoint] = Histogram()
        histogram.observe(seconds)

    def store_error(self) -> None:
        self.counts.store_errors += 1

    def purges_confirmed(self, adapter: str, seconds_since_write: Iterable[float]) -> None:
        count = 0
        for seconds in seconds_since_write:
            self.counts.purge_latency.observe(seconds)
            count += 1
        key = (adapter, "sent")
        self.counts.purges[key] = self.counts.purges.get(key, 0) + count

    def purges_failed(self, adapter: str, count: int) -> None:
        key = (adapter, "failed")
        self.counts.purges[key] = self.counts.purges.get(key, 0) + count

    def purge_backlog(self, length: int, oldest_seconds: float) -> None:
        self.counts.purge_queue_length, self.counts.purge_oldest_pending = length, oldest_seconds

    def token_rejected(self, source: str, reason: str) -> None:
        key = (source, reason)
        rejections = self.counts.token_rejections
        rejections[key] = rejections.get(key, 0) + 1

    def admin_write(self, result: str) -> None:
        writes = self.counts.admin_writes
        writes[result] = writes.get(result, 0) + 1

    def snapshot(
        self,
        cache: _CacheStats | None = None,
        reload_failures: int = 0,
        invalidations: _InvalidationStats | None = None,
    ) -> Counts:
        """A copy of this process's counts, with the counters kept by the cache, the policy and
        the invalidation listener, and the process's own figures, read now."""
        copy = Counts()
        copy.merge(self.counts)
        if cache is not None:
            copy.cache_hits, copy.cache_misses, copy.cache_entries = cache.hits, cache.misses, len(cache)
        if invalidations is not None:
            copy.invalidation_messages = invalidations.received
            copy.last_invalidation = invalidations.last_received
        copy.reload_failures = reload_failures
        copy.cpu_seconds, copy.resident_bytes, copy.open_fds = process_figures()
        copy.started = self.started
        return copy


def process_figures() -> tuple[float, int, int]:
    """(CPU seconds, resident bytes, open file descriptors) of this process; 0 where the platform
    does not say (no /proc)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        resident = 0
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = 0
    return cpu, resident, fds


class SnapshotDirectory:
    """Where workers publish their counts so any one of them can answer a scrape for all.

    Each worker atomically rewrites `<dir>/worker-<n>.json`; a scrape adds the other workers' files
    to its own live counts. A published file is at most one publishing interval old. The supervisor
    drops a dead worker's file, so a scrape counts only processes that are running (totals go down
    when a worker dies, as Prometheus expects of a counter whose process restarted).
    """

    def __init__(self, directory: str | Path, worker: int) -> None:
        self.directory = Path(directory)
        self.worker = worker
        self._path = self.directory / f"worker-{worker}.json"

    def publish(self, counts: Counts) -> None:
        temporary = self._path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(counts.to_json(), separators=(",", ":")), encoding="utf-8")
        temporary.replace(self._path)

    def drop(self) -> None:
        """Forget this worker's published counts (it died)."""
        self._path.unlink(missing_ok=True)

    def others(self) -> tuple[Counts, int]:
        """The other workers' last published counts, added up, and how many were read."""
        total, read = Counts(), 0
        for path in sorted(self.directory.glob("worker-*.json")):
            if path == self._path:
                continue
            try:
                total.merge(Counts.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable (another release?): leave it out of this scrape
            read += 1
        return total, read


@dataclass(frozen=True, slots=True)
class PolicyState:
    revision: str
    reload_failures: int
    failing: bool = False  # the files on disk did not load; an older revision serves


def render(
    counts: Counts, policy: PolicyState, started: float, workers: int = 1, *, version: str = "unknown",
    now: float | None = None,
) -> str:  # fmt: skip
    """The exposition text for one scrape: `counts` (this process's, plus the other workers'),
    the revision in force from `policy`, and the earliest of `started` and `counts.started`."""
    out = _Writer()
    out.family("asset_gateway_requests_total")
    for (endpoint, outcome, rule, status), value in sorted(counts.requests.items()):
        out.sample(
            "asset_gateway_requests_total",
            {"endpoint": endpoint, "outcome": outcome, "rule": rule, "status": status},
            value,
        )
    out.family("asset_gateway_decision_duration_seconds")
    for endpoint, histogram in sorted(counts.latency.items()):
        cumulative = 0
        for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
            cumulative += count
            labels = {"endpoint": endpoint, "le": _number(bound)}
            out.sample("asset_gateway_decision_duration_seconds_bucket", labels, cumulative)
        out.sample("asset_gateway_decision_duration_seconds_sum", {"endpoint": endpoint}, histogram.total)
        out.sample("asset_gateway_decision_duration_seconds_count", {"endpoint": endpoint}, histogram.count)
    out.single("asset_gateway_store_errors_total", counts.store_errors)
    out.single("asset_gateway_cache_hits_total", counts.cache_hits)
    out.single("asset_gateway_cache_misses_total", counts.cache_misses)
    out.single("asset_gateway_cache_entries", counts.cache_entries)
    out.family("asset_gateway_token_rejections_total")
    for (source, reason), value in sorted(counts.token_rejections.items()):
        out.sample("asset_gateway_token_rejections_total", {"source": source, "reason": reason}, value)
    out.family("asset_gateway_admin_writes_total")
    for result, value in sorted(counts.admin_writes.items()):
        out.sample("asset_gateway_admin_writes_total", {"result": result}, value)
    out.single("asset_gateway_invalidation_messages_total", counts.invalidation_messages)
    out.family("asset_gateway_invalidation_last_message_age_seconds")
    if counts.last_invalidation > 0:
        age = (time.time() if now is None else now) - counts.last_invalidation
        out.sample("asset_gateway_invalidation_last_message_age_seconds", {}, round(max(age, 0.0), 3))
    out.family("asset_gateway_policy_info")
    out.sample("asset_gateway_policy_info", {"revision": policy.revision}, 1)
    out.single("asset_gateway_policy_reload_failures_total", counts.reload_failures)
    out.single("asset_gateway_policy_reload_failing", 1 if policy.failing else 0)
    _render_purges(out, counts)
    out.family("asset_gateway_build_info")
    out.sample("asset_gateway_build_info", {"version": version}, 1)
    out.single("asset_gateway_workers", workers)
    out.single("process_cpu_seconds_total", round(counts.cpu_seconds, 3))
    out.single("process_resident_memory_bytes", counts.resident_bytes)
    out.single("process_open_fds", counts.open_fds)
    out.single("process_start_time_seconds", min(started, counts.started))
    return out.text()


def _render_purges(out: _Writer, counts: Counts) -> None:
    """DESIGN 2.9; alert rules use the first two names."""
    out.single("asset_gateway_purge_queue_length", counts.purge_queue_length)
    out.single("asset_gateway_purge_oldest_pending_seconds", counts.purge_oldest_pending)
    for result in ("sent", "failed"):
        name = f"asset_gateway_purges_{result}_total"
        out.family(name)
        for (adapter, kind), value in sorted(counts.purges.items()):
            if kind == result:
                out.sample(name, {"adapter": adapter}, value)
    histogram = counts.purge_latency
    out.family("asset_gateway_purge_seconds")
    cumulative = 0
    for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
        cumulative += count
        out.sample("asset_gateway_purge_seconds_bucket", {"le": _number(bound)}, cumulative)
    out.sample("asset_gateway_purge_seconds_sum", {}, histogram.total)
    out.sample("asset_gateway_purge_seconds_count", {}, histogram.count)


def _histogram(buckets: tuple[float, ...]) -> Histogram:
    return Histogram(buckets, [0] * (len(buckets) + 1))


def policy_state(current: CurrentPolicy) -> PolicyState:
    """What a scrape reports of the serving policy."""
    return PolicyState(
        current.policy.revision or "unknown", current.reload_failures, bool(current.last_error)
    )


class _Writer:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str) -> None:
        kind, help_text = FAMILIES[name]
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        if labels:
            inner = ",".join(f'{key}="{_escape_label(text)}"' for key, text in labels.items())
            self._lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self._lines.append(f"{name} {_number(value)}")

    def single(self, name: str, value: float) -> None:
        """A family with one unlabelled sample."""
        self.family(name)
        self.sample(name, {}, value)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
