"""Step three of a request: an id (or, on the legacy route, a normalised legacy path: DESIGN 2.8)
→ its record, then the record's replacement chain (A replaced by
B replaced by C) to the file a visitor should get. Publishers make mistakes, so a loop or a dangling
id must end in a clear status, never a hang. Reads go through whatever getter the caller has: the
process's cached store, a store opened for one command, or a policy test case's records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from gateway.legacy import as_legacy
from gateway.models import NO_REPLACEMENT, AccessRequest, AssetRecord, Replacement, ReplacementStatus

Getter = Callable[[str], Awaitable[AssetRecord | None]]

MAX_DEPTH = 10


@dataclass(frozen=True, slots=True)
class Found:
    """What the decision needs to know about the file: its record (None: no record) and where its
    replacement chain ends."""

    record: AssetRecord | None
    replacement: Replacement = NO_REPLACEMENT


async def look_up(get: Getter, asset_id: str) -> Found:
    """The record for `asset_id` and its replacement chain. Raises what `get` raises
    (StoreUnavailable, RecordUnreadable)."""
    record = await get(asset_id)
    if record is None or record.replacement_id is None:
        return Found(record)
    return Found(record, await resolve_replacement(get, record))


async def look_up_route(
    get: Getter, get_by_legacy_path: Getter, request: AccessRequest
) -> tuple[AccessRequest, Found]:
    """The look-up the request's route calls for: by id on /media, by normalised path on the legacy
    route, where the request gains the id of the record found and the record stands with its legacy
    validators (gateway.legacy.as_legacy). Raises what the getters raise."""
    if request.legacy_path is None:
        return request, await look_up(get, request.asset_id)
    record = await get_by_legacy_path(request.legacy_path)
    if record is None:
        return request, Found(None)
    request = replace(request, asset_id=record.id)
    record = as_legacy(record)
    if record.replacement_id is None:
        return request, Found(record)
    return request, Found(record, await resolve_replacement(get, record))


async def resolve_replacement(get: Getter, record: AssetRecord, max_depth: int = MAX_DEPTH) -> Replacement:
    """Where `record`'s replacement chain ends: the first record without a replacement_id.

    At most `max_depth` hops are followed (each one a store read); a longer chain, or one that
    revisits an id (the record itself included), is BROKEN.
    """
    if record.replacement_id is None:
        return NO_REPLACEMENT
    seen = {record.id}
    current = record
    for _ in range(max_depth):
        next_id = current.replacement_id
        assert next_id is not None  # loop invariant: we only step from records that point on
        if next_id in seen:
            return Replacement(ReplacementStatus.BROKEN)
        seen.add(next_id)
        found = await get(next_id)
        if found is None:
            return Replacement(ReplacementStatus.MISSING)
        if found.replacement_id is None:
            status = ReplacementStatus.LIVE if found.live else ReplacementStatus.NOT_LIVE
            return Replacement(status, found)
        current = found
    return Replacement(ReplacementStatus.BROKEN)
