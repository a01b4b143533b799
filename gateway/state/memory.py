"""In-process asset store for the demo, tests and single-process use: the same versioned-write rule
as Redis, so code that works against one works against the other. Accepted writes are announced to
in-process listeners, the equivalent of Redis pub/sub for one process (gateway.state.invalidation)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from gateway.cdn.plan import plan_purge
from gateway.cdn.queue import MemoryPurgeQueue
from gateway.models import AssetRecord
from gateway.state.base import StoreUnavailable, Subscriber, WriteResult

Listener = Callable[[str], None]


class MemoryAssetStore:
    """A dict of id → record, and one of legacy path → the id holding it (the same rules as the
    Redis index). Nothing here awaits, so each call is atomic under asyncio."""

    def __init__(self, records: Iterable[AssetRecord] = (), *, purge: bool = False) -> None:
        self._records: dict[str, AssetRecord] = {}
        # CDN purges of applied writes (gateway.cdn), queued in this process like everything else.
        self.purges: MemoryPurgeQueue | None = MemoryPurgeQueue() if purge else None
        self._legacy: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self.reads = 0  # backend reads, so cache tests can prove a warm path does none
        for record in records:
            self._apply(record)

    async def get(self, asset_id: str) -> AssetRecord | None:
        self.reads += 1
        return self._records.get(asset_id)

    async def get_by_legacy_path(self, path: str) -> AssetRecord | None:
        self.reads += 1
        holder = self._legacy.get(path)
        return None if holder is None else self._records.get(holder)

    async def put(
        self, record: AssetRecord, *, base_version: int | None = None, force: bool = False
    ) -> WriteResult:
        return self._apply(record, base_version, force=force)

    async def put_many(self, records: Sequence[AssetRecord]) -> list[WriteResult | StoreUnavailable]:
        return [self._apply(record) for record in records]

    async def scan(self, batch_size: int = 1000) -> AsyncIterator[list[AssetRecord]]:
        records = list(self._records.values())  # a snapshot: writes during the scan cannot break it
        for start in range(0, len(records), batch_size):
            yield records[start : start + batch_size]

    def _apply(
        self, record: AssetRecord, base_version: int | None = None, *, force: bool = False
    ) -> WriteResult:
        current = self._records.get(record.id)
        stored = 0 if current is None else current.version
        if force:
            base_version = None
        elif current is not None and record.version <= current.version:
            return WriteResult(applied=False, current_version=current.version, unchanged=current == record)
        if base_version is not None and stored != base_version:
            return WriteResult(applied=False, current_version=stored)
        path = record.legacy_url_path
        holder = None if path is None else self._records.get(self._legacy.get(path, ""))
        taken = holder is not None and holder.id != record.id and not holder.deleted
        if path is not None and not record.deleted and taken:
            assert holder is not None
            return WriteResult(applied=False, current_version=stored, legacy_holder=holder.id)
        self._records[record.id] = record  # frozen, so storing the caller's object is safe
        purge = plan_purge(current, record) if self.purges is not None else None
        if self.purges is not None and purge is not None:
            self.purges.add_now([purge])
        announce = [record.id]
        if path is not None:
            if not record.deleted or holder is None or holder.id == record.id:
                self._legacy[path] = record.id
            announce.append(path)
        old = None if current is None else current.legacy_url_path
        if old is not None and old != path:
            if self._legacy.get(old) == record.id:
                del self._legacy[old]
            announce.append(old)
        for listener in tuple(self._listeners):
            for name in announce:
                listener(name)
        return WriteResult(applied=True, current_version=record.version, created=current is None)

    async def subscribe(self, subscriber: Subscriber) -> None:
        """One process holds the only copy of the state: a direct call replaces pub/sub."""
        self.add_listener(subscriber.on_announced)
        subscriber.on_subscribed(in_process=True)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.remove_listener(subscriber.on_announced)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(asset_id)` after every accepted write."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._records)
