"""The AssetStore protocol every backend implements, and the errors callers handle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.models import AssetRecord


class StoreUnavailable(RuntimeError):
    """The backing store cannot be reached; callers answer 503 rather than guess."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    applied: bool  # False: the write's version was not greater than the stored one
    current_version: int  # the version stored after the call


class AssetStore(Protocol):
    async def get(self, asset_id: str) -> AssetRecord | None:
        """The current record, or None. Raises StoreUnavailable."""
        ...

    async def put(self, record: AssetRecord) -> WriteResult:
        """Store the record only if its version is greater than the stored one, atomically."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot serve."""
        ...

    async def close(self) -> None: ...
