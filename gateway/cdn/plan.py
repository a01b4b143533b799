"""What a write purges at the CDN: a pure function of the record before and after it.

A purge is needed when the write changes how the asset answers on a live host (only those answers
are publicly cacheable). It is **hard** when the write takes access away (made draft, deleted,
access-limited, redirected, replaced, no longer servable, its URL gone): a CDN's soft purge may
keep serving the stale answer when the origin errors, which would re-serve an unpublished file.
Anything else that changes the answer (new bytes, type, name, validators) is a **soft** purge."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from gateway.cdn.tags import asset_key
from gateway.models import AccessList, AssetRecord
from gateway.urls import asset_path


class PurgeKind(enum.Enum):
    SOFT = "soft"
    HARD = "hard"


@dataclass(frozen=True, slots=True)
class Purge:
    """One asset's purge: the surrogate keys to drop, and the paths for CDNs that purge by URL."""

    asset_id: str
    kind: PurgeKind
    keys: tuple[str, ...]
    paths: tuple[str, ...]


def purge_kind(old: AssetRecord | None, new: AssetRecord) -> PurgeKind | None:
    """None when a live host answers exactly as before (or nothing could be cached yet)."""
    if old is None:
        return None  # no record answered 404, and errors are never publicly cacheable
    if _live_view(old) == _live_view(new):
        return None
    return PurgeKind.HARD if removes_access(old, new) else PurgeKind.SOFT


def removes_access(old: AssetRecord, new: AssetRecord) -> bool:
    """True when some URL of the asset that a live host served before may now answer otherwise
    than with the same file: the cases a stale copy must never outlive."""
    return (
        (new.deleted and not old.deleted)
        or (new.draft and not old.draft)
        or (_limited(new.access_limited) and new.access_limited != old.access_limited)
        or (new.redirect_url is not None and new.redirect_url != old.redirect_url)
        or (new.replacement_id is not None and new.replacement_id != old.replacement_id)
        or (old.state == "uploaded" and new.state != "uploaded")
        or bool(_names(old) - _names(new))  # a filename that answered no longer does
    )


def plan_purge(old: AssetRecord | None, new: AssetRecord) -> Purge | None:
    """The purge a write from `old` to `new` needs, or None."""
    kind = purge_kind(old, new)
    if kind is None:
        return None
    return Purge(new.id, kind, (asset_key(new.id),), purge_paths(old, new))


def manual_purge(asset_id: str, record: AssetRecord | None = None) -> Purge:
    """A hard purge asked for by hand; the paths are known only when the record is."""
    paths = purge_paths(None, record) if record is not None else ()
    return Purge(asset_id, PurgeKind.HARD, (asset_key(asset_id),), paths)


def purge_paths(old: AssetRecord | None, new: AssetRecord) -> tuple[str, ...]:
    """Every /media path either record answers on, current names and history, in a stable order."""
    names: dict[str, None] = {}
    for record in (old, new):
        if record is not None:
            names.update(dict.fromkeys(sorted(_names(record))))
    paths = [asset_path(new.id, name) for name in names]
    for record in (old, new):
        legacy = getattr(record, "legacy_url_path", None)  # DESIGN 2.8, where records carry it
        if isinstance(legacy, str) and legacy:
            paths.append(legacy)
    return tuple(dict.fromkeys(paths))


def _names(record: AssetRecord) -> set[str]:
    return {record.filename, *record.filename_history}


def _limited(access: AccessList) -> bool:
    return bool(access.users or access.organisations or access.groups)


def _live_view(record: AssetRecord) -> AssetRecord:
    """The record without what a live host's answer never depends on: the version, and preview
    ids (they unlock the draft host only)."""
    return replace(record, version=0, auth_bypass_ids=())
