"""`GET /metrics` on the admin listener (no token: scrapers carry none), in Prometheus text format.
With `--workers N` each worker publishes its counts every second and the worker that answers a scrape
adds the others' to its own, so one scrape covers the host."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.background import spawn, stop
from gateway.http.context import GATEWAY, Gateway
from gateway.metrics import CONTENT_TYPE, Counts, SnapshotDirectory, policy_state, render
from gateway.version import VERSION

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 1.0  # seconds; how stale another worker's counts may be in a scrape


async def handle_metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    metrics = gateway.metrics
    counts = _snapshot(gateway)
    workers = 1
    if metrics.snapshots is not None:
        others, workers = metrics.snapshots.others()
        counts.merge(others)
        workers += 1
    text = render(counts, policy_state(gateway.policy), metrics.started, workers, version=VERSION)
    response = web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})
    response.headers["Cache-Control"] = "no-store"
    return response


def _snapshot(gateway: Gateway) -> Counts:
    """This process's counts, including those its cache, policy and listener keep themselves."""
    return gateway.metrics.snapshot(
        gateway.store, policy_state(gateway.policy).reload_failures, gateway.invalidations
    )


async def _publish_forever(gateway: Gateway, snapshots: SnapshotDirectory) -> None:
    while True:
        try:
            snapshots.publish(_snapshot(gateway))
        except OSError as exc:
            log.warning("could not publish this worker's metrics to %s: %s", snapshots.directory, exc)
        await asyncio.sleep(PUBLISH_INTERVAL)


async def publish_snapshots(app: web.Application) -> AsyncIterator[None]:
    """With several workers, this one's counts are published every PUBLISH_INTERVAL for the
    others' scrapes, as long as the admin listener runs (gateway.app registers it)."""
    gateway = app[GATEWAY]
    snapshots = gateway.metrics.snapshots
    if snapshots is None:
        yield
        return
    task = spawn(_publish_forever(gateway, snapshots), name="metrics-publisher")
    yield
    await stop(task)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", handle_metrics)
