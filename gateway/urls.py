"""Building the URLs the gateway sends browsers to. Pure; used by responses and policy tests."""

from __future__ import annotations

from urllib.parse import quote

MEDIA_PREFIX = "/media/"


def asset_path(asset_id: str, filename: str) -> str:
    """The stable public path of an asset, its filename percent-encoded."""
    return f"{MEDIA_PREFIX}{asset_id}/{quote(filename, safe='')}"
