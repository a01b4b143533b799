"""In-process asset store for the demo, tests and single-process use: the same versioned-write rule
as Redis, so code that works against one works against the other."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.models import AssetRecord
from gateway.state.base import WriteResult


class MemoryAssetStore:
    """A dict of id → record. Nothing here awaits, so each call is atomic under asyncio."""

    def __init__(self, records: Iterable[AssetRecord] = ()) -> None:
        self._records: dict[str, AssetRecord] = {}
        self.reads = 0  # backend reads, so cache tests can prove a warm path does none
        for record in records:
            self._apply(record)

    async def get(self, asset_id: str) -> AssetRecord | None:
        self.reads += 1
        return self._records.get(asset_id)

    async def put(self, record: AssetRecord) -> WriteResult:
        return self._apply(record)

    def _apply(self, record: AssetRecord) -> WriteResult:
        current = self._records.get(record.id)
        if current is not None and record.version <= current.version:
            return WriteResult(applied=False, current_version=current.version)
        self._records[record.id] = record  # frozen, so storing the caller's object is safe
        return WriteResult(applied=True, current_version=record.version)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._records)
