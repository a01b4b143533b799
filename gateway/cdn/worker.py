"""The purge worker: takes purges from the queue, sends them through the adapter, acknowledges
only what the CDN confirmed, and retries the rest with backoff. Every serving process runs one; the
consumer group hands each entry to one of them. Entries a dead process left pending are claimed
after `claim_after` seconds; a live one keeps its retries its own by touching them."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from redis.exceptions import ResponseError

from gateway.background import raise_if_cancelled
from gateway.cdn.adapters import Purger
from gateway.cdn.queue import PurgeQueue, QueuedPurge
from gateway.metrics import Metrics
from gateway.state.redis import UNAVAILABLE

log = logging.getLogger(__name__)

CLAIM_AFTER: Final = 30.0  # seconds an entry may stay pending before another gateway takes it
BATCH_SIZE: Final = 100
READ_BLOCK: Final = 0.5  # below the Redis client's 1 s socket timeout
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0
BACKLOG_INTERVAL: Final = 1.0


def backoff(attempts: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds before retry number `attempts` (1, 2, ...): doubling from `base`, at most `cap`."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def consumer_name() -> str:
    """Unique per process start, so a restarted gateway never mistakes a dead one's entries for its own."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class PurgeMetrics(Protocol):
    """Where the worker reports (gateway.metrics.Metrics)."""

    def purges_confirmed(self, adapter: str, seconds_since_write: Iterable[float]) -> None: ...

    def purges_failed(self, adapter: str, count: int) -> None: ...

    def purge_backlog(self, length: int, oldest_seconds: float) -> None: ...


@dataclass(slots=True)
class _Retry:
    queued: QueuedPurge
    attempts: int
    due: float


class PurgeWorker:
    def __init__(
        self,
        queue: PurgeQueue,
        purger: Purger,
        *,
        metrics: PurgeMetrics | None = None,
        consumer: str | None = None,
        claim_after: float = CLAIM_AFTER,
        batch_size: int = BATCH_SIZE,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.purger = purger
        self.metrics: PurgeMetrics = metrics if metrics is not None else Metrics()
        self.consumer = consumer or consumer_name()
        self.claim_after = claim_after
        self._batch = batch_size
        self._backoff = (backoff_base, backoff_cap)
        self._clock = clock
        self._retries: dict[str, _Retry] = {}
        self._next_claim = 0.0
        self._next_touch = 0.0
        self._next_backlog = 0.0
        self._prepared = False

    async def run(self) -> None:
        """Until cancelled. Redis trouble is logged and waited out; nothing is acknowledged unsent."""
        trouble = 0
        while True:
            raise_if_cancelled()
            try:
                if not self._prepared:
                    await self.queue.prepare()
                    self._prepared = True
                await self.step()
                trouble = 0
            except UNAVAILABLE as exc:
                trouble += 1
                log.warning("purge queue unavailable: %s: %s", type(exc).__name__, str(exc)[:200])
                await asyncio.sleep(backoff(trouble, *self._backoff))
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("purge consumer group missing (Redis restarted empty?); creating it again")
                    self._prepared = False
                    continue
                trouble += 1
                log.error("purge round refused by Redis: %s", str(exc)[:200])
                await asyncio.sleep(backoff(trouble, *self._backoff))
            except Exception:
                # A bug must not stop purging for the life of the process: log it loudly and go
                # on; entries stay pending, so nothing is lost.
                trouble += 1
                log.exception("purge round failed")
                await asyncio.sleep(backoff(trouble, *self._backoff))

    async def step(self, block: float = READ_BLOCK) -> int:
        """One round: claim, read, send, acknowledge. Returns how many purges were confirmed."""
        now = self._clock()
        batch: dict[str, QueuedPurge] = {}
        if now >= self._next_claim:
            self._next_claim = now + self.claim_after / 2
            for queued in await self.queue.claim(self.consumer, self.claim_after, self._batch):
                if queued.entry_id not in self._retries:
                    batch[queued.entry_id] = queued
        if self._retries and now >= self._next_touch:
            self._next_touch = now + self.claim_after / 3
            await self.queue.touch(self.consumer, list(self._retries))
        for entry_id, retry in list(self._retries.items()):
            if retry.due <= now and len(batch) < self._batch:
                batch[entry_id] = retry.queued
        wait = 0.001 if batch else self._wait(now, block)
        for queued in await self.queue.read(self.consumer, self._batch, wait):
            batch[queued.entry_id] = queued
        confirmed = await self._send(list(batch.values())) if batch else 0
        await self._sample_backlog()
        return confirmed

    def _wait(self, now: float, block: float) -> float:
        """Block on the stream, but no longer than until the next retry falls due."""
        next_due = min((r.due for r in self._retries.values()), default=now + block)
        return max(0.001, min(block, next_due - now))

    async def _send(self, batch: list[QueuedPurge]) -> int:
        results = await self.purger.purge([queued.purge for queued in batch])
        now = self._clock()
        name = self.purger.name
        done = [queued for queued, ok in zip(batch, results, strict=True) if ok]
        await self.queue.ack([queued.entry_id for queued in done])
        for queued in done:
            self._retries.pop(queued.entry_id, None)
        self.metrics.purges_confirmed(name, [max(0.0, now - queued.enqueued_at) for queued in done])
        failed = [queued for queued, ok in zip(batch, results, strict=True) if not ok]
        if failed:
            self.metrics.purges_failed(name, len(failed))
        for queued in failed:
            previous = self._retries.get(queued.entry_id)
            attempts = previous.attempts + 1 if previous else 1
            self._retries[queued.entry_id] = _Retry(queued, attempts, now + backoff(attempts, *self._backoff))
        return len(done)

    async def _sample_backlog(self) -> None:
        now = self._clock()
        if now < self._next_backlog:
            return
        self._next_backlog = now + BACKLOG_INTERVAL
        length, oldest = await self.queue.backlog()
        self.metrics.purge_backlog(length, 0.0 if oldest is None else max(0.0, now - oldest))
