"""Prometheus metrics for one process, in the text exposition format (version 0.0.4), written by hand:
counting a request is a dict update and a bisect, with no dependency on the hot path.

Counters live in the process that served the request. With `--workers N` each worker keeps its own;
the scrape endpoint merges every worker's published snapshot (see `SnapshotDirectory`), so one scrape
of the admin port shows the whole host whichever worker the kernel hands it to.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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


class _CacheStats(Protocol):
    hits: int
    misses: int

    def __len__(self) -> int: ...


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
            "purge_latency": {"counts": self.purge_latency.counts, "sum": self.purge_latency.total,
                              "count": self.purge_latency.count},
            "purge_queue": [self.purge_queue_length, self.purge_oldest_pending],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counts:
        counts = cls(
            store_errors=int(data["store_errors"]),
            cache_hits=int(data["cache_hits"]),
            cache_misses=int(data["cache_misses"]),
            cache_entries=int(data["cache_entries"]),
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

    def snapshot(self, cache: _CacheStats | None = None) -> Counts:
        """A copy of this process's counts, with the cache's own counters read now."""
        copy = Counts()
        copy.merge(self.counts)
        if cache is not None:
            copy.cache_hits, copy.cache_misses, copy.cache_entries = cache.hits, cache.misses, len(cache)
        return copy


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


def render(counts: Counts, policy: PolicyState, started: float, workers: int = 1) -> str:
    """The exposition text for one scrape."""
    out = _Writer()
    out.family(
        "asset_gateway_requests_total",
        "counter",
        "Answers given, by endpoint (media, auth), outcome, deciding rule and HTTP status.",
    )
    for (endpoint, outcome, rule, status), value in sorted(counts.requests.items()):
        out.sample(
            "asset_gateway_requests_total",
            {"endpoint": endpoint, "outcome": outcome, "rule": rule, "status": status},
            value,
        )
    out.family(
        "asset_gateway_decision_duration_seconds",
        "histogram",
        "Time from a request's arrival to its answer being ready (parse, identify, lookup, decide, respond).",
    )
    for endpoint, histogram in sorted(counts.latency.items()):
        cumulative = 0
        for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
            cumulative += count
            labels = {"endpoint": endpoint, "le": _number(bound)}
            out.sample("asset_gateway_decision_duration_seconds_bucket", labels, cumulative)
        out.sample("asset_gateway_decision_duration_seconds_sum", {"endpoint": endpoint}, histogram.total)
        out.sample("asset_gateway_decision_duration_seconds_count", {"endpoint": endpoint}, histogram.count)
    out.counter(
        "asset_gateway_store_errors_total",
        "Requests that could not read the state store (Redis unreachable or timing out).",
        counts.store_errors,
    )
    out.counter(
        "asset_gateway_cache_hits_total",
        "Record lookups answered from the in-process cache.",
        counts.cache_hits,
    )
    out.counter(
        "asset_gateway_cache_misses_total",
        "Record lookups that had to ask the state store.",
        counts.cache_misses,
    )
    out.gauge("asset_gateway_cache_entries", "Records held in the in-process caches.", counts.cache_entries)
    out.family("asset_gateway_policy_info", "gauge", "The policy revision in force (always 1).")
    out.sample("asset_gateway_policy_info", {"revision": policy.revision}, 1)
    out.counter(
        "asset_gateway_policy_reload_failures_total",
        "Policy reloads refused because the edited files were invalid (the last good policy stays).",
        policy.reload_failures,
    )
    _render_purges(out, counts)
    out.gauge("asset_gateway_workers", "Worker processes whose counts this answer includes.", workers)
    out.gauge("process_start_time_seconds", "Start time of the process since the Unix epoch.", started)
    return out.text()


def _render_purges(out: _Writer, counts: Counts) -> None:
    """DESIGN 2.9; alert rules use the first two names."""
    out.gauge(
        "asset_gateway_purge_queue_length",
        "CDN purges enqueued and not yet confirmed by the CDN (the whole shared queue).",
        counts.purge_queue_length,
    )
    out.gauge(
        "asset_gateway_purge_oldest_pending_seconds",
        "Age of the oldest CDN purge not yet confirmed; 0 when the queue is empty.",
        counts.purge_oldest_pending,
    )
    for result, help_text in (
        ("sent", "CDN purges the CDN confirmed, by adapter."),
        ("failed", "CDN purge attempts the CDN did not confirm (each is retried), by adapter."),
    ):
        name = f"asset_gateway_purges_{result}_total"
        out.family(name, "counter", help_text)
        for (adapter, kind), value in sorted(counts.purges.items()):
            if kind == result:
                out.sample(name, {"adapter": adapter}, value)
    histogram = counts.purge_latency
    out.family(
        "asset_gateway_purge_seconds",
        "histogram",
        "Seconds from the write that asked for a CDN purge to the CDN confirming it.",
    )
    cumulative = 0
    for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
        cumulative += count
        out.sample("asset_gateway_purge_seconds_bucket", {"le": _number(bound)}, cumulative)
    out.sample("asset_gateway_purge_seconds_sum", {}, histogram.total)
    out.sample("asset_gateway_purge_seconds_count", {}, histogram.count)


def _histogram(buckets: tuple[float, ...]) -> Histogram:
    return Histogram(buckets, [0] * (len(buckets) + 1))


def policy_state(current: object) -> PolicyState:
    """Read from a CurrentPolicy without depending on attributes a given release may lack."""
    policy = getattr(current, "policy", None)
    revision = str(getattr(policy, "revision", "") or "unknown")
    failures = getattr(current, "reload_failures", 0)
    return PolicyState(revision, failures if isinstance(failures, int) else 0)


class _Writer:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        if labels:
            inner = ",".join(f'{key}="{_escape_label(text)}"' for key, text in labels.items())
            self._lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self._lines.append(f"{name} {_number(value)}")

    def counter(self, name: str, help_text: str, value: float) -> None:
        self.family(name, "counter", help_text)
        self.sample(name, {}, value)

    def gauge(self, name: str, help_text: str, value: float) -> None:
        self.family(name, "gauge", help_text)
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


def merge_all(parts: Iterable[Counts]) -> Counts:
    total = Counts()
    for part in parts:
        total.merge(part)
    return total
