"""Asset records to and from JSON: strict validation with one error per bad field, so a publisher
learns everything wrong with a write at once and nothing half-valid is ever stored."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.legacy import MAX_LEGACY_PATH, NotALegacyPath, normalise_legacy_path
from gateway.models import ASSET_STATES, NO_LIMITS, AccessList, AssetRecord

ASSET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_STRING = 1024
MAX_URL = 2048
MAX_LIST = 1000
# Versions a write may carry: below 2^53, so every JSON client (JavaScript's numbers included)
# reads and sends them exactly, and a publisher has no reason to reach the top of the range. A
# record frozen by a version out of a publisher's reach is repaired by a forced write (ops).
MAX_VERSION = 2**53 - 1
# Versions a stored record may carry: records written before the cap stay readable.
STORED_MAX_VERSION = 2**63 - 1

_FIELDS = (
    "id", "version", "object_key", "filename", "filename_history", "content_type", "state",
    "draft", "deleted", "redirect_url", "replacement_id", "access_limited", "auth_bypass_ids",
    "parent_document_url", "etag", "last_modified", "size", "legacy_url_path", "legacy_etag",
    "legacy_last_modified",
)  # fmt: skip
_KNOWN_FIELDS = frozenset(_FIELDS)
_ACCESS_FIELDS = ("users", "organisations", "groups")
# Every record read from Redis is validated again, so these checks run on each cache miss.
_CONTROL_CHARS = re.compile(r"[\x00\r\n]")
# Each state's one string, shared by every record in it.
_STATES = {state: state for state in ASSET_STATES}


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RecordInvalid(ValueError):
    """A record failed validation; `errors` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def is_valid_asset_id(value: object) -> bool:
    return isinstance(value, str) and ASSET_ID.fullmatch(value) is not None


def is_absolute_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not any(ch in value for ch in "\r\n\t ")
    )


class _Checker:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: list[FieldError] = []

    def fail(self, name: str, message: str) -> None:
        self.errors.append(FieldError(name, message))

    def string(self, name: str, *, required: bool = False, limit: int = MAX_STRING) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.fail(name, "is required")
            return None
        if not isinstance(value, str):
            self.fail(name, "must be a string")
            return None
        if required and not value:
            self.fail(name, "must not be empty")
            return None
        if len(value) > limit:
            self.fail(name, f"must be at most {limit} characters")
            return None
        if _CONTROL_CHARS.search(value):
            self.fail(name, "must not contain control characters")
            return None
        return value

    def boolean(self, name: str) -> bool:
        value = self.data.get(name, False)
        if not isinstance(value, bool):
            self.fail(name, "must be true or false")
            return False
        return value

    def strings(self, name: str, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(name, "must be a list of strings")
            return ()
        if len(value) > MAX_LIST:
            self.fail(name, f"must have at most {MAX_LIST} items")
            return ()
        if not all(isinstance(v, str) and 0 < len(v) <= MAX_STRING for v in value):
            self.fail(name, f"must be a list of non-empty strings of at most {MAX_STRING} characters")
            return ()
        return tuple(value)


def record_from_dict(data: object, *, max_version: int = MAX_VERSION) -> AssetRecord:
    """Validate a JSON object into an AssetRecord, or raise RecordInvalid naming each bad field.
    `max_version`: the cap for new writes by default; stored records are read with a looser one."""
    if not isinstance(data, Mapping):
        raise RecordInvalid([FieldError("(body)", "must be a JSON object")])
    check = _Checker(data)
    for name in data:
        if name not in _KNOWN_FIELDS:
            check.fail(str(name), "is not a known field")

    asset_id = data.get("id")
    if not is_valid_asset_id(asset_id):
        check.fail("id", "must match [A-Za-z0-9_-]{1,64}")

    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        check.fail("version", "must be an integer")
        version = 0
    elif not 0 < version <= max_version:
        check.fail("version", f"must be a positive integer up to {max_version}")

    object_key = check.string("object_key", required=True)
    filename = check.string("filename", required=True, limit=255)
    if filename is not None and ("/" in filename or filename in (".", "..")):
        check.fail("filename", "must be a plain file name without '/'")
    history = check.strings("filename_history", data.get("filename_history"))
    content_type = check.string("content_type") or "application/octet-stream"

    state = data.get("state", "uploaded")
    if state not in ASSET_STATES:
        check.fail("state", f"must be one of {', '.join(ASSET_STATES)}")
        state = ""

    redirect_url = check.string("redirect_url", limit=MAX_URL)
    if redirect_url is not None and not is_absolute_http_url(redirect_url):
        check.fail("redirect_url", "must be an absolute http or https URL")
    parent_url = check.string("parent_document_url", limit=MAX_URL)
    if parent_url is not None and not is_absolute_http_url(parent_url):
        check.fail("parent_document_url", "must be an absolute http or https URL")

    replacement_id = data.get("replacement_id")
    if replacement_id is not None and not is_valid_asset_id(replacement_id):
        check.fail("replacement_id", "must be null or an asset id")

    limits = data.get("access_limited") or {}
    access = NO_LIMITS
    if not isinstance(limits, Mapping):
        check.fail("access_limited", "must be an object with users, organisations, groups")
    else:
        for name in limits:
            if name not in _ACCESS_FIELDS:
                check.fail(f"access_limited.{name}", "is not a known field")
        access = _access_list(
            *(check.strings(f"access_limited.{name}", limits.get(name)) for name in _ACCESS_FIELDS)
        )

    size = data.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        check.fail("size", "must be null or a non-negative integer")

    legacy_path = check.string("legacy_url_path", limit=MAX_LEGACY_PATH)
    if legacy_path is not None:
        try:
            legacy_path = normalise_legacy_path(legacy_path)
        except NotALegacyPath as exc:
            check.fail("legacy_url_path", str(exc))
            legacy_path = None

    record = AssetRecord(
        id=str(asset_id),
        version=int(version),
        object_key=object_key or "",
        filename=filename or "",
        filename_history=history,
        content_type=sys.intern(content_type),
        state=_STATES.get(state, ""),
        draft=check.boolean("draft"),
        deleted=check.boolean("deleted"),
        redirect_url=redirect_url,
        replacement_id=replacement_id if isinstance(replacement_id, str) else None,
        access_limited=access,
        auth_bypass_ids=check.strings("auth_bypass_ids", data.get("auth_bypass_ids")),
        parent_document_url=parent_url,
        etag=check.string("etag", limit=256),
        last_modified=check.string("last_modified", limit=64),
        size=size if isinstance(size, int) else None,
        legacy_url_path=legacy_path,
        legacy_etag=check.string("legacy_etag", limit=256),
        legacy_last_modified=check.string("legacy_last_modified", limit=64),
    )
    if check.errors:
        raise RecordInvalid(check.errors)
    return record


def _access_list(
    users: tuple[str, ...], organisations: tuple[str, ...], groups: tuple[str, ...]
) -> AccessList:
    if not (users or organisations or groups):
        return NO_LIMITS
    return AccessList(users, organisations, groups)


# How a string holding CR, LF or NUL looks in JSON: json.dumps writes these escapes, other writers
# may use \u000d, \u000a, \u0000. A match may be a false alarm, which only costs the full check.
_CONTROL_ESCAPES = ("\\r", "\\n", "\\u000")
_ACCESS_KEYS = frozenset(_ACCESS_FIELDS)
_NULL_OR_STR = frozenset((type(None), str))


def record_from_stored(raw: bytes | str) -> AssetRecord:
    """A record as the write path stored it (gateway.state.redis), having validated it in full.

    A value of exactly the shape `record_to_dict` writes is checked for its JSON types and for what
    is cheap enough for every cache miss (the id forms, the version and size ranges, the state, no
    control characters, non-empty required strings); lengths and the forms of URLs, file names and
    legacy paths are not checked again. Any other value (a record stored before a field existed, or
    one that is no record at all) goes through `record_from_dict`. Raises ValueError (RecordInvalid
    for a value that is not a record) or RecursionError, like `json.loads` and `record_from_dict`.
    """
    if isinstance(raw, bytes):
        # What json.dumps stores: UTF-8 starting with '{'. Anything else (a BOM, UTF-16 or 32,
        # which hold NUL bytes) is decoded by json.loads as before, and checked in full.
        if raw[:1] != b"{" or b"\x00" in raw:
            return record_from_dict(json.loads(raw), max_version=STORED_MAX_VERSION)
        raw = raw.decode("utf-8", "surrogatepass")  # as json.loads decodes UTF-8
    data = json.loads(raw)
    record = _stored(data, raw)
    return record if record is not None else record_from_dict(data, max_version=STORED_MAX_VERSION)


def _stored(data: Any, text: str) -> AssetRecord | None:
    """The record when `data` has the shape `record_to_dict` writes and passes the cheap checks."""
    if type(data) is not dict or data.keys() != _KNOWN_FIELDS:
        return None
    if _CONTROL_ESCAPES[0] in text or _CONTROL_ESCAPES[1] in text or _CONTROL_ESCAPES[2] in text:
        return None
    version, size, state, access = data["version"], data["size"], data["state"], data["access_limited"]
    replacement_id = data["replacement_id"]
    nullable = _NULL_OR_STR
    if not (
        type(version) is int
        and 0 < version <= STORED_MAX_VERSION
        and (size is None or (type(size) is int and size >= 0))
        and type(state) is str
        and state in _STATES
        and type(data["draft"]) is bool
        and type(data["deleted"]) is bool
        and is_valid_asset_id(data["id"])
        and (replacement_id is None or is_valid_asset_id(replacement_id))
        and _filled(data["object_key"])
        and _filled(data["filename"])
        and _filled(data["content_type"])
        and type(data["redirect_url"]) in nullable
        and type(data["parent_document_url"]) in nullable
        and type(data["etag"]) in nullable
        and type(data["last_modified"]) in nullable
        and type(data["legacy_url_path"]) in nullable
        and type(data["legacy_etag"]) in nullable
        and type(data["legacy_last_modified"]) in nullable
        and _texts(data["filename_history"])
        and _texts(data["auth_bypass_ids"])
        and type(access) is dict
        and access.keys() == _ACCESS_KEYS
        and _texts(access["users"])
        and _texts(access["organisations"])
        and _texts(access["groups"])
    ):
        return None
    return AssetRecord(
        id=data["id"],
        version=version,
        object_key=data["object_key"],
        filename=data["filename"],
        filename_history=tuple(data["filename_history"]),
        content_type=sys.intern(data["content_type"]),
        state=_STATES[state],
        draft=data["draft"],
        deleted=data["deleted"],
        redirect_url=data["redirect_url"],
        replacement_id=replacement_id,
        access_limited=_access_list(*(tuple(access[name]) for name in _ACCESS_FIELDS)),
        auth_bypass_ids=tuple(data["auth_bypass_ids"]),
        parent_document_url=data["parent_document_url"],
        etag=data["etag"],
        last_modified=data["last_modified"],
        size=size,
        legacy_url_path=data["legacy_url_path"],
        legacy_etag=data["legacy_etag"],
        legacy_last_modified=data["legacy_last_modified"],
    )


def _filled(value: object) -> bool:
    return type(value) is str and value != ""


def _texts(value: object) -> bool:
    """A JSON list of strings."""
    return type(value) is list and (not value or all(type(item) is str for item in value))


def record_to_dict(record: AssetRecord) -> dict[str, Any]:
    """The JSON shape of DESIGN 2.4, every field present."""
    return {
        "id": record.id,
        "version": record.version,
        "object_key": record.object_key,
        "filename": record.filename,
        "filename_history": list(record.filename_history),
        "content_type": record.content_type,
        "state": record.state,
        "draft": record.draft,
        "deleted": record.deleted,
        "redirect_url": record.redirect_url,
        "replacement_id": record.replacement_id,
        "access_limited": {
            "users": list(record.access_limited.users),
            "organisations": list(record.access_limited.organisations),
            "groups": list(record.access_limited.groups),
        },
        "auth_bypass_ids": list(record.auth_bypass_ids),
        "parent_document_url": record.parent_document_url,
        "etag": record.etag,
        "last_modified": record.last_modified,
        "size": record.size,
        "legacy_url_path": record.legacy_url_path,
        "legacy_etag": record.legacy_etag,
        "legacy_last_modified": record.legacy_last_modified,
    }
