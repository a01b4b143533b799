"""Which surrogate keys a publicly cacheable answer carries, so a purge by key finds every answer a
write changes. Pure; the responder adds them, the purge plan names the same keys."""

from __future__ import annotations

from gateway.models import AssetRecord, Decision

DEFAULT_KEY_HEADER = "Surrogate-Key"


def asset_key(asset_id: str) -> str:
    """The key of every cacheable answer about one asset (ids are `[A-Za-z0-9_-]`, so no escaping)."""
    return f"asset-{asset_id}"


def answer_keys(record: AssetRecord | None, decision: Decision) -> tuple[str, ...]:
    """The requested asset's key and, for a 301 to a replacement, the final replacement's: that
    redirect stops being right when either of them changes (say the replacement is unpublished)."""
    keys: list[str] = []
    if record is not None:
        keys.append(asset_key(record.id))
    if decision.replacement is not None:
        keys.append(asset_key(decision.replacement.id))
    return tuple(dict.fromkeys(keys))
