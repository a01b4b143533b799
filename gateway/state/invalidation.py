"""Invalidation by id: every accepted write announces its asset id (the Redis write script publishes
it; the memory store calls its listeners), and every gateway process drops that id from its
in-process cache, so the next request anywhere reads the new state. Messages carry ids, never
records. A subscription that drops may have missed messages, so the whole cache is cleared each
time it is (re)established; until then the cache TTL bounds how stale an entry can be. How a
backend subscribes is its own business (AssetStore.subscribe); this module is the receiving end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from gateway.legacy import LEGACY_PREFIX
from gateway.records import is_valid_asset_id
from gateway.state.cache import CachedAssetStore

log = logging.getLogger(__name__)

PING_INTERVAL: Final = 5.0  # seconds of silence before we ask the server whether it is still there
RETRY_FIRST: Final = 0.05  # seconds before the first resubscribe attempt, doubling up to RETRY_CAP
RETRY_CAP: Final = 1.0


class InvalidationListener:
    """Keeps one process's cache in step with writes made anywhere. Run `run()` as a background
    task for the life of the process; `status`, `subscriptions` and `received` are for /readyz,
    metrics and tests. A gateway.state.base.Subscriber."""

    def __init__(
        self,
        cache: CachedAssetStore,
        *,
        ping_interval: float = PING_INTERVAL,
        retry_first: float = RETRY_FIRST,
        retry_cap: float = RETRY_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: seconds, only ever compared with itself; the silence check's time source."""
        self.cache = cache
        self.ping_interval = ping_interval
        self.clock = clock
        self.retry_first = retry_first
        self.retry_cap = retry_cap
        # starting | subscribed | reconnecting | in-process | none | stopped
        self.status = "starting"
        self.subscriptions = 0  # times the subscription was (re)established; each cleared the cache
        self.received = 0  # ids received
        self.last_received = 0.0  # Unix time of the newest one (0: none yet), for metrics
        self.subscribed = asyncio.Event()
        self._settled = asyncio.Event()  # first subscription confirmed, or nothing to subscribe to
        self._failures = 0  # since the subscription last worked

    async def started(self) -> None:
        """Returns once `run()` is listening (or has nothing to listen to), so a process can wait
        before taking traffic it could not yet keep fresh."""
        await self._settled.wait()

    async def run(self) -> None:
        try:
            await self.cache.subscribe(self)
            self.status = "none"
            self._settled.set()
            log.info("the state store announces no writes: entries live out their TTL")
        finally:
            self.status = "stopped"
            self.subscribed.clear()

    # -- gateway.state.base.Subscriber

    def on_subscribed(self, *, in_process: bool) -> None:
        if in_process:
            self.status = "in-process"
        else:
            self.cache.clear()
            if self.subscriptions:
                log.info("invalidation channel re-established; cleared the record cache")
            self.status = "subscribed"
        self.subscriptions += 1
        self._failures = 0
        self.subscribed.set()
        self._settled.set()

    def on_announced(self, name: str) -> None:
        # An asset id, or a normalised legacy path a write moved (gateway.state.cache).
        if not is_valid_asset_id(name) and not name.startswith(LEGACY_PREFIX):
            log.warning("ignoring an invalidation for a malformed asset id")
            return
        self.received += 1
        self.last_received = time.time()
        self.cache.invalidate(name)

    def on_lost(self, reason: str) -> float:
        self.subscribed.clear()
        self.status = "reconnecting"
        self._failures += 1
        if self._failures == 1:  # once per outage, not once per retry
            log.warning("invalidation channel lost (%s); relying on the cache TTL until it is back", reason)
        return float(min(self.retry_cap, self.retry_first * 2 ** min(self._failures - 1, 10)))
