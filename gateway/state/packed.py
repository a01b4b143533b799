"""The form a record takes in the in-process record cache (gateway.state.cache): its field values
only, in one bytes object, so a cached record costs one object instead of one per field (a record
object and its strings take ~800 bytes; packed, the same record takes ~280).

`marshal` writes the values: it is C, keeps tuples, ints, None and any str (lone surrogates
included) exactly, and reads a record back in well under a microsecond. A packed record never
leaves the process and is only ever read by the code that wrote it, so marshal's format changing
between Python versions, and its reader trusting its input, do not matter here.
"""

from __future__ import annotations

import marshal
from typing import NewType

from gateway.models import NO_LIMITS, AccessList, AssetRecord

PackedRecord = NewType("PackedRecord", bytes)


def pack(record: AssetRecord, key: str) -> PackedRecord:
    """`record`'s values, for the cache to hold under `key` (its id or legacy path). The id is left
    out when it is the key, which `unpack` is given back."""
    limits = record.access_limited
    return PackedRecord(
        marshal.dumps((
            None if record.id == key else record.id, record.version, record.object_key,
            record.filename, record.filename_history, record.content_type, record.state,
            record.draft, record.deleted, record.redirect_url, record.replacement_id,
            None if limits is NO_LIMITS else (limits.users, limits.organisations, limits.groups),
            record.auth_bypass_ids, record.parent_document_url, record.etag, record.last_modified,
            record.size, record.legacy_url_path, record.legacy_etag, record.legacy_last_modified,
        ))
    )  # fmt: skip


def unpack(packed: PackedRecord, key: str) -> AssetRecord:
    """The record `pack(record, key)` was given: equal to it, with the key as its id when it was
    left out."""
    (
        asset_id, version, object_key, filename, filename_history, content_type, state, draft,
        deleted, redirect_url, replacement_id, limits, auth_bypass_ids, parent_document_url, etag,
        last_modified, size, legacy_url_path, legacy_etag, legacy_last_modified,
    ) = marshal.loads(packed)  # noqa: S302 - only what `pack` wrote  # fmt: skip
    return AssetRecord(
        key if asset_id is None else asset_id, version, object_key, filename, filename_history,
        content_type, state, draft, deleted, redirect_url, replacement_id,
        NO_LIMITS if limits is None else AccessList(*limits), auth_bypass_ids, parent_document_url,
        etag, last_modified, size, legacy_url_path, legacy_etag, legacy_last_modified,
    )  # fmt: skip
