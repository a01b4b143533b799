"""Legacy Whitehall URLs (DESIGN 2.8): `/government/uploads/...` paths in one canonical spelling, so
the index finds a file however a link in the wild happens to encode its name. Pure functions."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from gateway.models import AssetRecord

LEGACY_PREFIX: Final = "/government/uploads/"
MAX_LEGACY_PATH: Final = 2048  # characters, once normalised
# RFC 3986 pchar minus pct-encoded: what a path segment may hold literally. Everything else,
# including '/' inside a segment and every non-ASCII byte, is percent-encoded.
_SEGMENT_SAFE: Final = "-._~!$&'()*+,;=:@"
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_EXTENSION: Final = re.compile(r"[^.]\.([A-Za-z0-9]{1,16})\Z")
IMAGE_EXTENSIONS: Final = frozenset({"jpg", "jpeg", "png", "gif"})


class NotALegacyPath(ValueError):
    """The text is not a usable legacy path; the message says why (never the path itself)."""


def normalise_legacy_path(path: str) -> str:
    """The canonical spelling of a legacy path: RFC 3986 path segments where every octet that may
    stand literally in a segment does, every other octet is `%XX` with upper-case hex, and
    non-ASCII text is UTF-8. Equivalent spellings give the same result; normalising twice changes
    nothing. Raises NotALegacyPath for anything that is not `/government/uploads/<segments>`."""
    if not path.startswith(LEGACY_PREFIX):
        raise NotALegacyPath(f"must start with {LEGACY_PREFIX}")
    if _BAD_ESCAPE.search(path):
        raise NotALegacyPath("has a '%' that is not followed by two hex digits")
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise NotALegacyPath("is not valid text") from None
    segments = []
    for piece in raw[len(LEGACY_PREFIX) :].split(b"/"):
        octets = unquote_to_bytes(piece)
        if not octets:
            raise NotALegacyPath("has an empty segment")
        if octets in (b".", b".."):
            raise NotALegacyPath("has a '.' or '..' segment")
        if any(byte < 0x20 or byte == 0x7F for byte in octets):
            raise NotALegacyPath("has a control character")
        segments.append(quote(octets, safe=_SEGMENT_SAFE))
    normalised = LEGACY_PREFIX + "/".join(segments)
    if len(normalised) > MAX_LEGACY_PATH:
        raise NotALegacyPath(f"must be at most {MAX_LEGACY_PATH} characters once normalised")
    return normalised


def file_name(normalised: str) -> str:
    """The last segment of a normalised path, decoded (undecodable bytes replaced)."""
    return unquote_to_bytes(normalised.rsplit("/", 1)[1]).decode("utf-8", "replace")


def extension(name: str) -> str | None:
    """The file extension, lower-cased, or None when the name has none (DESIGN 2.8: 404)."""
    match = _EXTENSION.search(name)
    return None if match is None else match.group(1).lower()


def placeholder_for(name: str, placeholder: str, image_placeholder: str) -> str:
    """Where a file not yet cleared for serving sends the browser: images get an image."""
    return image_placeholder if extension(name) in IMAGE_EXTENSIONS else placeholder


def as_legacy(record: AssetRecord) -> AssetRecord:
    """The record as the legacy route answers with it: `legacy_etag` and `legacy_last_modified`
    stand in for the current validators, so moving storage does not invalidate every cache."""
    if record.legacy_etag is None and record.legacy_last_modified is None:
        return record
    return replace(
        record,
        etag=record.legacy_etag if record.legacy_etag is not None else record.etag,
        last_modified=(
            record.legacy_last_modified if record.legacy_last_modified is not None else record.last_modified
        ),
    )
