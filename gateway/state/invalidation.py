"""Invalidation by id: every accepted write announces its asset id (the Redis write script publishes
it; the memory store calls its listeners), and every gateway process drops that id from its
in-process cache, so the next request anywhere reads the new state. Messages carry ids, never
records. A subscription that drops may have missed messages, so the whole cache is cleared each
time it is (re)established; until then the cache TTL bounds how stale an entry can be."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster

from gateway.legacy import LEGACY_PREFIX
from gateway.records import is_valid_asset_id
from gateway.state.cache import CachedAssetStore
from gateway.state.memory import MemoryAssetStore
from gateway.state.redis import INVALIDATION_CHANNEL, UNAVAILABLE, RedisAssetStore, RedisClient

log = logging.getLogger(__name__)

PING_INTERVAL: Final = 5.0  # seconds of silence before we ask the server whether it is still there
RETRY_FIRST: Final = 0.05  # seconds before the first resubscribe attempt, doubling up to RETRY_CAP
RETRY_CAP: Final = 1.0


class SubscriptionSilent(Exception):
    """The server stopped answering on the subscription connection (e.g. a network partition)."""


class InvalidationListener:
    """Keeps one process's cache in step with writes made anywhere. Run `run()` as a background
    task for the life of the process; `status`, `subscriptions` and `received` are for /readyz,
    metrics and tests."""

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
        backend = self.cache.store
        try:
            if isinstance(backend, RedisAssetStore):
                await self._listen(backend.client)
            elif isinstance(backend, MemoryAssetStore):
                await self._listen_in_process(backend)
            else:
                self.status = "none"
                self._settled.set()
                log.info("%s announces no writes: entries live out their TTL", type(backend).__name__)
        finally:
            self.status = "stopped"
            self.subscribed.clear()

    async def _listen_in_process(self, backend: MemoryAssetStore) -> None:
        """One process holds the only copy of the state: a direct call replaces pub/sub."""
        backend.add_listener(self.cache.invalidate)
        self.status = "in-process"
        self.subscriptions += 1
        self.subscribed.set()
        self._settled.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            backend.remove_listener(self.cache.invalidate)

    async def _listen(self, client: RedisClient) -> None:
        tries = 0  # picks the Cluster node to try, so a dead node is not tried forever
        while True:
            _raise_if_cancelled()
            pubsub: Any = None
            try:
                pubsub = await self._pubsub(client, tries)
                await pubsub.subscribe(INVALIDATION_CHANNEL)
                _raise_if_cancelled()
                await self._receive(pubsub)
            except (*UNAVAILABLE, SubscriptionSilent) as exc:
                self._lost(f"{type(exc).__name__}: {str(exc)[:200]}")
            except Exception:
                # A bug here must not end invalidation for the life of the process: log it whole,
                # fall back to the TTL and try again after the pause below.
                log.exception("invalidation listener failed; resubscribing")
                self._lost("unexpected error")
            finally:
                if pubsub is not None:
                    await _close(pubsub)
            tries += 1
            await asyncio.sleep(min(self.retry_cap, self.retry_first * 2 ** min(self._failures - 1, 10)))

    async def _pubsub(self, client: RedisClient, attempt: int) -> Any:
        """Single node and Sentinel: a connection from the client's own pool (Sentinel's follows the
        master). Cluster: any one node, since a PUBLISH reaches every node of the cluster; after a
        failure the next attempt tries the next node."""
        if isinstance(client, RedisCluster):
            await client.initialize()
            nodes = client.get_nodes()
            return client.pubsub(node=nodes[attempt % len(nodes)])
        return client.pubsub()

    async def _receive(self, pubsub: Any) -> None:
        heard = self.clock()
        while True:
            message = await pubsub.get_message(timeout=self.ping_interval)
            _raise_if_cancelled()
            now = self.clock()
            if message is None:
                if now - heard > 1.5 * self.ping_interval:
                    raise SubscriptionSilent(f"no answer for {now - heard:.1f}s")
                await pubsub.ping()
                _raise_if_cancelled()
                continue
            heard = now
            kind = message["type"]
            if kind == "subscribe":
                # Also after redis-py reconnected and resubscribed by itself: we cannot know what
                # was published while the connection was down, so forget everything. Cleared only
                # now that the server has confirmed the subscription, so no later write is missed.
                self._subscribed()
            elif kind == "message":
                self._invalidate(message["data"])

    def _subscribed(self) -> None:
        self.cache.clear()
        if self.subscriptions:
            log.info("invalidation channel re-established; cleared the record cache")
        self.subscriptions += 1
        self._failures = 0
        self.status = "subscribed"
        self.subscribed.set()
        self._settled.set()

    def _invalidate(self, data: bytes | str) -> None:
        name = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        # An asset id, or a normalised legacy path a write moved (gateway.state.cache).
        if not is_valid_asset_id(name) and not name.startswith(LEGACY_PREFIX):
            log.warning("ignoring an invalidation for a malformed asset id")
            return
        self.received += 1
        self.last_received = time.time()
        self.cache.invalidate(name)

    def _lost(self, reason: str) -> None:
        self.subscribed.clear()
        self.status = "reconnecting"
        self._failures += 1
        if self._failures == 1:  # once per outage, not once per retry
            log.warning("invalidation channel lost (%s); relying on the cache TTL until it is back", reason)


def _raise_if_cancelled() -> None:
    """Python 3.11's asyncio.wait_for, which redis-py uses to send commands, can swallow a
    cancellation that arrives just as the send completes (fixed in 3.12); the task still counts
    as cancelling, so check, or stopping the listener could wait forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except UNAVAILABLE as exc:  # the connection is being dropped anyway
        log.debug("closing the invalidation subscription: %s", exc)
