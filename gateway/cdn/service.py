"""Purging in a serving process: the queue that goes with the configured store, and the worker."""

from __future__ import annotations

from gateway.cdn.adapters import Purger, open_purger
from gateway.cdn.queue import PurgeQueue, RedisPurgeQueue
from gateway.cdn.worker import PurgeMetrics, PurgeWorker
from gateway.settings import CdnSettings
from gateway.state.base import AssetStore
from gateway.state.memory import MemoryAssetStore
from gateway.state.redis import RedisAssetStore


def purge_queue_for(store: AssetStore) -> PurgeQueue:
    """The stream on the store's Redis, or a memory store's in-process queue. Raises ValueError for a
    store that does not enqueue purges (opened without `purge=True`), which would never feed it."""
    if isinstance(store, RedisAssetStore) and store.purge:
        return RedisPurgeQueue(store.client)
    if isinstance(store, MemoryAssetStore) and store.purges is not None:
        return store.purges
    raise ValueError("cdn.purge is set but the state store was opened without purges")


def purge_worker(
    settings: CdnSettings, store: AssetStore, metrics: PurgeMetrics, purger: Purger | None = None
) -> PurgeWorker | None:
    """The worker for `[cdn] purge` (or `purger`), or None when purging is off."""
    purger = purger or open_purger(settings)
    if purger is None:
        return None
    return PurgeWorker(purge_queue_for(store), purger, metrics=metrics)
