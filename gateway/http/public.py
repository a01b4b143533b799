"""The public listener: `GET|HEAD /media/{id}/{filename}`. Gathers inputs, runs
parse → identify → lookup → decide → respond → log, and turns failures into bare statuses."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.identify import identify
from gateway.models import NO_REPLACEMENT, AssetRecord, Decision, Identity
from gateway.observability import log_access, new_request_id
from gateway.parsing import MethodNotAllowed, NotAnAsset, RequestParser, is_trusted
from gateway.policy.evaluation import decide
from gateway.policy.reload import CurrentPolicy
from gateway.responses import Responder, error_response
from gateway.settings import Settings
from gateway.state.base import StoreUnavailable
from gateway.state.cache import CachedAssetStore
from gateway.state.chain import resolve_replacement
from gateway.tokens import TokenVerifier

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True, slots=True)
class Gateway:
    """Everything a request needs, built once per process."""

    settings: Settings
    parser: RequestParser
    verifier: TokenVerifier
    store: CachedAssetStore
    policy: CurrentPolicy
    responder: Responder


GATEWAY = web.AppKey("gateway", Gateway)


def request_id(request: web.Request, settings: Settings) -> str:
    """A proxy's X-Request-Id is kept only when the proxy is trusted and the id is plain."""
    given = request.headers.get("X-Request-Id")
    if given and _REQUEST_ID.fullmatch(given) and is_trusted(request.remote, settings.server.trusted_proxies):
        return given
    return new_request_id()


async def handle_media(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    started = time.perf_counter()
    rid = request_id(request, gateway.settings)
    fields: dict[str, Any] = {
        "request_id": rid,
        "method": request.method,
        "path": request.rel_url.raw_path,
    }
    response, decision, identity = await _answer(request, gateway, fields)
    response.headers["X-Request-Id"] = rid
    fields["status"] = response.status
    if decision is not None:
        fields.update(outcome=decision.action.value, rule=decision.rule, policy_revision=decision.revision)
    if identity is not None:
        if identity.user is not None:
            fields["subject"] = identity.user.sub
        if identity.preview is not None:
            fields["preview"] = identity.preview.sub
    fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    log_access(fields)
    return response


async def _answer(
    request: web.Request, gateway: Gateway, fields: dict[str, Any]
) -> tuple[web.StreamResponse, Decision | None, Identity | None]:
    url = request.rel_url
    try:
        access, tokens, origin = gateway.parser.parse(
            request.method, url.raw_path, url.raw_query_string, request.headers,
            peer=request.remote, secure=request.secure,
        )  # fmt: skip
    except NotAnAsset:
        fields["outcome"] = "not_found"
        return error_response(404), None, None
    except MethodNotAllowed:
        fields["outcome"] = "method_not_allowed"
        return error_response(405), None, None
    fields.update(host=access.host, asset_id=access.asset_id)

    now = time.time()
    identity = identify(tokens, gateway.verifier, now)
    store = gateway.store
    record: AssetRecord | None
    try:
        record = await store.get(access.asset_id)
        replacement = NO_REPLACEMENT
        if record is not None and record.replacement_id is not None:
            replacement = await resolve_replacement(store.get, record)
    except StoreUnavailable:
        fields["outcome"] = "store_unavailable"
        return error_response(503, retry_after=True), None, identity

    decision = decide(
        access, identity, record, gateway.policy.policy, now,
        replacement=replacement, login_configured=bool(gateway.settings.login.url),
    )  # fmt: skip
    try:
        response = gateway.responder.respond(decision, access, origin, identity, tokens, record, now)
    except Exception:
        log.exception("could not build the response for asset %s", access.asset_id)
        return error_response(500), decision, identity
    return response, decision, identity
