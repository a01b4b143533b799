"""Step three of a request: the record an AccessRequest names (by id, or by legacy path) and where
its replacement chain ends. One function for the HTTP handlers, `explain` and policy tests."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from gateway.legacy import as_legacy
from gateway.models import NO_REPLACEMENT, AccessRequest, AssetRecord, Replacement
from gateway.state.chain import resolve_replacement


class RecordReader(Protocol):
    """All a lookup needs from a store (a running gateway passes its cached one)."""

    async def get(self, asset_id: str) -> AssetRecord | None: ...

    async def get_by_legacy_path(self, path: str) -> AssetRecord | None: ...


@dataclass(frozen=True, slots=True)
class Found:
    request: AccessRequest  # a legacy request gains the id of the record found
    record: AssetRecord | None  # on the legacy route, with the legacy validators in place
    replacement: Replacement


async def look_up(reader: RecordReader, request: AccessRequest) -> Found:
    """Raises StoreUnavailable like the reader does."""
    if request.legacy_path is not None:
        record = await reader.get_by_legacy_path(request.legacy_path)
        if record is not None:
            request = replace(request, asset_id=record.id)
            record = as_legacy(record)
    else:
        record = await reader.get(request.asset_id)
    replacement = NO_REPLACEMENT
    if record is not None and record.replacement_id is not None:
        replacement = await resolve_replacement(reader.get, record)
    return Found(request, record, replacement)
