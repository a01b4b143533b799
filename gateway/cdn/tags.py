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


def key_header_value(cache_control: str, record: AssetRecord | None, decision: Decision) -> str:
    """The key header's value for an answer with this Cache-Control: its keys when a shared cache
    may keep it, else "" (a private or failed answer is never stored, and its keys would say what
    exists). One rule for the direct answer and for the headers nginx copies."""
    if not cache_control.startswith("public"):
        return ""
    return " ".join(answer_keys(record, decision))
