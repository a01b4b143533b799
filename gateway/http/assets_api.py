"""The publisher API on the admin listener: PUT, PATCH, GET and DELETE /assets/{id} (DESIGN 2.5).

Every write carries a version and is a compare-and-set in the store, so a late or out-of-order
write is refused with 409 instead of being applied, and a refused or invalid write changes nothing.
Reads come from the store itself, never from this process's cache. The store announces every
accepted write to all gateways (gateway.state.invalidation)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from gateway.http.admin import MAX_BODY_BYTES, json_error
from gateway.http.context import GATEWAY
from gateway.models import AssetRecord
from gateway.records import (
    MAX_VERSION,
    FieldError,
    RecordInvalid,
    is_valid_asset_id,
    record_from_dict,
    record_to_dict,
)
from gateway.state.base import RecordUnreadable, StoreUnavailable, WriteResult

log = logging.getLogger("gateway.admin")

ROUTE = "/assets/{asset_id}"
# A read-modify-write (PATCH, DELETE) starts over when another write lands between its read and
# its write; past this many tries in a row the caller gets 409 "conflict" and may retry.
MERGE_ATTEMPTS = 5


class _Rejected(Exception):
    """Carries the error answer out of the body/parameter helpers."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


async def get_asset(request: web.Request) -> web.Response:
    asset_id = request.match_info["asset_id"]
    if not is_valid_asset_id(asset_id):
        return json_error(404, "not_found")
    try:
        record = await request.app[GATEWAY].store.get_uncached(asset_id)
    except RecordUnreadable:
        return _unreadable()
    except StoreUnavailable:
        return _store_unavailable()
    if record is None:
        return json_error(404, "not_found")
    return _record_response(200, record)


async def put_asset(request: web.Request) -> web.Response:
    """The full record. 201 when the id had no record, 200 when it replaced one or when this very
    record was already stored (so a retried PUT is not mistaken for a stale one).

    `?force=true` (ops only, audited): store it whatever the stored version is, e.g. to recover a
    record a publisher froze with a version out of reach, or to lower its version again."""
    asset_id = request.match_info["asset_id"]
    force = request.query.get("force")
    if force not in (None, "true", "false"):
        return _invalid([FieldError("force", "must be true or false")])
    try:
        body = await _json_object(request)
        errors: list[FieldError] = []
        if body.setdefault("id", asset_id) != asset_id:
            errors.append(FieldError("id", "must equal the id in the path"))
            body["id"] = asset_id  # so the rest is still checked, against the path's id
        record = _validated(body, errors)
    except _Rejected as rejected:
        return rejected.response
    forced = force == "true"
    try:
        result = await request.app[GATEWAY].store.put(record, force=forced)
    except StoreUnavailable:
        return _store_unavailable(request)
    _audit(request, record, result, forced=forced)
    if result.unchanged:  # the same PUT again, e.g. a retry after a lost answer
        return _record_response(200, record)
    if result.legacy_holder is not None:
        return _legacy_path_taken(result.legacy_holder)
    if not result.applied:
        return _stale(result)
    return _record_response(201 if result.created else 200, record)


async def patch_asset(request: web.Request) -> web.Response:
    """A JSON merge patch (RFC 7386) onto the stored record, with the new `version` required:
    fields given replace the stored ones, objects merge, `null` resets a field to its default."""
    asset_id = request.match_info["asset_id"]
    try:
        patch = await _json_object(request)
    except _Rejected as rejected:
        return rejected.response
    errors = []
    if patch.get("version") is None:
        errors.append(FieldError("version", "is required: the new version of the record"))
    if "id" in patch and patch["id"] != asset_id:
        errors.append(FieldError("id", "must equal the id in the path"))
    if errors:
        return _invalid(errors)

    def patched(current: dict[str, Any]) -> AssetRecord:
        return _validated(merge_patch(current, patch))

    return await _read_modify_write(request, asset_id, patched)


async def delete_asset(request: web.Request) -> web.Response:
    """Soft delete: a new version of the record with `deleted: true` (answers 410 from then on)."""
    asset_id = request.match_info["asset_id"]
    raw = request.query.get("version")
    if raw is None:
        return _invalid([FieldError("version", "is required as a query parameter: ?version=N")])
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 16 and 0 < int(raw) <= MAX_VERSION):
        return _invalid([FieldError("version", f"must be a positive integer up to {MAX_VERSION}")])
    version = int(raw)

    def deleted(current: dict[str, Any]) -> AssetRecord:
        return replace(record_from_dict(current), version=version, deleted=True)

    return await _read_modify_write(request, asset_id, deleted)


async def _read_modify_write(
    request: web.Request, asset_id: str, change: Callable[[dict[str, Any]], AssetRecord]
) -> web.Response:
    """Read the stored record, apply `change` (stored dict → new record, may raise _Rejected), and
    write it only if the record is still the one read (base_version); otherwise start over."""
    gateway = request.app[GATEWAY]
    if not is_valid_asset_id(asset_id):
        return json_error(404, "not_found")
    result: WriteResult | None = None
    for _ in range(MERGE_ATTEMPTS):
        try:
            current = await gateway.store.get_uncached(asset_id)
            if current is None:
                return json_error(404, "not_found")
            try:
                record = change(record_to_dict(current))
            except _Rejected as rejected:
                return rejected.response
            result = await gateway.store.put(record, base_version=current.version)
        except RecordUnreadable:
            return _unreadable()
        except StoreUnavailable:
            return _store_unavailable(request)
        _audit(request, record, result)
        if result.applied or result.unchanged:
            return _record_response(200, record)
        if result.legacy_holder is not None:
            return _legacy_path_taken(result.legacy_holder)
        if result.current_version >= record.version:
            return _stale(result)
        # Another write landed in between: apply the change on top of that one instead.
    assert result is not None
    return json_error(409, "conflict", current_version=result.current_version)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386: a pure function, so PATCH semantics are tested without a server."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            existing = merged.get(key)
            merged[key] = merge_patch(existing if isinstance(existing, dict) else {}, value)
        else:
            merged[key] = value
    return merged


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Rejected(json_error(413, "too_large", max_bytes=MAX_BODY_BYTES)) from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        body = None
    if not isinstance(body, dict):
        raise _Rejected(json_error(400, "malformed_json"))
    return body


def _validated(data: dict[str, Any], errors: list[FieldError] | None = None) -> AssetRecord:
    """The record, or _Rejected with 422 naming every bad field (including `errors` found earlier)."""
    found = list(errors or ())
    try:
        record = record_from_dict(data)
    except RecordInvalid as exc:
        found.extend(exc.errors)
    if found:
        raise _Rejected(_invalid(found))
    return record


def _invalid(errors: list[FieldError]) -> web.Response:
    return json_error(422, "invalid", details=[e.as_dict() for e in errors])


def _legacy_path_taken(holder: str) -> web.Response:
    """DESIGN 2.8: another record that is not deleted holds the legacy_url_path."""
    return json_error(409, "legacy_path_taken", asset_id=holder)


def _stale(result: WriteResult) -> web.Response:
    return json_error(409, "stale_version", current_version=result.current_version)


def _unreadable() -> web.Response:
    """The stored value is not a record: only a PUT of the whole record can repair it."""
    return json_error(409, "record_unreadable")


def _store_unavailable(write: web.Request | None = None) -> web.Response:
    """503; `write` is the request when it was a write, which is then counted."""
    if write is not None:
        write.app[GATEWAY].metrics.admin_write("store_unavailable")
    response = json_error(503, "store_unavailable")
    response.headers["Retry-After"] = "1"
    return response


def _record_response(status: int, record: AssetRecord) -> web.Response:
    response = web.json_response(record_to_dict(record), status=status)
    response.headers["Cache-Control"] = "no-store"
    if status == 201:
        response.headers["Location"] = f"/assets/{record.id}"
    return response


def _audit(request: web.Request, record: AssetRecord, result: WriteResult, *, forced: bool = False) -> None:
    """One line per write attempt that reached the store: who changed what, and whether it took.
    A forced write is logged at WARNING with `forced: true`, so ops can find every one."""
    if result.applied:
        outcome = "applied"
    elif result.unchanged:
        outcome = "unchanged"
    elif result.legacy_holder is not None:
        outcome = "legacy_path_taken"
    elif result.current_version >= record.version:
        outcome = "stale"
    else:
        outcome = "raced"  # another write landed between the read and this one: re-applied
    request.app[GATEWAY].metrics.admin_write(outcome)
    fields: dict[str, object] = {
        "result": outcome,
        "method": request.method,
        "asset_id": record.id,
        "version": record.version,
        "applied": result.applied,
        "unchanged": result.unchanged,
        "current_version": result.current_version,
        "remote": request.remote,
    }
    if result.legacy_holder is not None:
        fields["legacy_path_taken_by"] = result.legacy_holder
    if forced:
        fields["forced"] = True
        log.warning("asset_write", extra={"fields": fields})
        return
    log.info("asset_write", extra={"fields": fields})


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, get_asset)
    app.router.add_put(ROUTE, put_asset)
    app.router.add_patch(ROUTE, patch_asset)
    app.router.add_delete(ROUTE, delete_asset)
