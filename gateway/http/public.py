"""The public listener: `GET|HEAD /media/{id}/{filename}` and the legacy `/government/uploads/...`
URLs (DESIGN 2.8). Gathers inputs, runs
parse → identify → lookup → decide → respond → log, and turns failures into bare statuses."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.cdn.worker import PurgeWorker
from gateway.http.answers import AnswerCache, Key, answer_key
from gateway.identify import identify, learn_user_keys
from gateway.metrics import Metrics
from gateway.models import AccessRequest, AssetRecord, Decision, Identity
from gateway.observability import client_fields, log_access, new_request_id
from gateway.oidc.relying_party import SignIn
from gateway.parsing import MethodNotAllowed, NotAnAsset, Origin, RawTokens, RequestParser, is_trusted
from gateway.policy.evaluation import decide
from gateway.policy.language import Policy
from gateway.policy.reload import CurrentPolicy
from gateway.responses import Responder, error_response
from gateway.settings import Settings
from gateway.state.base import RecordUnreadable, StoreUnavailable
from gateway.state.cache import CachedAssetStore
from gateway.state.invalidation import InvalidationListener
from gateway.state.lookup import look_up
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
    invalidations: InvalidationListener  # keeps `store` in step with writes made anywhere
    metrics: Metrics = field(default_factory=Metrics)  # this process's counters, read by /metrics
    # Finished answers of warm /media requests (gateway.http.answers); None turns it off.
    answers: AnswerCache | None = None
    clock: Callable[[], float] = time.time  # the time decisions are made at (tests inject one)
    signin: SignIn | None = None  # `/oauth2/*` when [oidc] is set (gateway.http.oauth2)
    purges: PurgeWorker | None = None  # sends CDN purges while the public listener runs (DESIGN 2.9)


GATEWAY = web.AppKey("gateway", Gateway)


def request_id(request: web.Request, settings: Settings) -> str:
    """A proxy's X-Request-Id is kept only when the proxy is trusted and the id is plain."""
    given = request.headers.get("X-Request-Id")
    if given and _REQUEST_ID.fullmatch(given) and is_trusted(request.remote, settings.server.trusted_proxies):
        return given
    return new_request_id()


async def handle_media(request: web.Request) -> web.StreamResponse:
    url = request.rel_url
    method, raw_path, raw_query = request.method, url.raw_path, url.raw_query_string
    key: Key | None = None
    if request.app[GATEWAY].answers is not None:
        try:
            key, cached = _cached_answer(request, method, raw_path, raw_query)
        except Exception:
            # A bug in the shortcut must not lose the request: the full evaluation still answers,
            # logs and counts it.
            log.exception("answer cache failed for %s; evaluating in full", raw_path[:200])
            key, cached = None, None
        if cached is not None:
            return cached
    return await answer(request, "media", method, raw_path, raw_query, render_direct, answer_key=key)


def _cached_answer(
    request: web.Request, method: str, raw_path: str, raw_query: str
) -> tuple[Key | None, web.StreamResponse | None]:
    """The answer cache's key for this request, and its stored answer (logged and counted) if
    that is still exactly what a full evaluation would give."""
    gateway = request.app[GATEWAY]
    answers = gateway.answers
    assert answers is not None
    started = time.perf_counter()
    key = answer_key(
        method,
        raw_path,
        raw_query,
        request.headers,
        gateway.parser.is_trusted(request.remote),
        request.secure,
    )
    if key is None:
        return None, None
    now = gateway.clock()
    entry = answers.lookup(key, now, gateway.policy.policy, gateway.store, gateway.responder)
    if entry is None:
        return key, None
    gateway.store.hits += 1  # the record lookup a full evaluation makes, from the cache
    response = answers.response(entry, now)
    rid = request_id(request, gateway.settings)
    response.headers["X-Request-Id"] = rid
    decision = entry.decision
    # The same line, field for field, as `answer` writes for a full evaluation.
    fields: dict[str, Any] = {
        "request_id": rid, "method": method, "path": raw_path, "host": entry.host, "route": "media",
        "asset_id": entry.asset_id, "status": entry.status, "outcome": decision.action.value,
        "rule": decision.rule, "policy_revision": decision.revision,
    }  # fmt: skip
    if entry.subject is not None:
        fields["subject"] = entry.subject
    if entry.preview is not None:
        fields["preview"] = entry.preview
    _log_and_count(gateway, request, "media", fields, decision.rule, started)
    return key, response


async def handle_legacy(request: web.Request) -> web.StreamResponse:
    """A legacy Whitehall URL: the same pipeline, without the answer cache (its records are
    cached by path in the record cache)."""
    url = request.rel_url
    return await answer(request, "legacy", request.method, url.raw_path, url.raw_query_string, render_direct)


@dataclass(frozen=True, slots=True)
class Evaluated:
    """The pipeline reached a decision: everything `respond` needs to turn it into HTTP."""

    decision: Decision
    access: AccessRequest
    origin: Origin
    identity: Identity
    tokens: RawTokens
    record: AssetRecord | None
    now: float
    policy: Policy  # the very object that decided


@dataclass(frozen=True, slots=True)
class Refused:
    """No decision was made: not an asset path (404), a method other than GET/HEAD (405), the
    state store unreachable with nothing cached or the record unreadable (503), or a bug (500)."""

    status: int
    outcome: str
    identity: Identity | None = None


Render = Callable[[Gateway, "Evaluated | Refused"], web.StreamResponse]


def render_direct(gateway: Gateway, result: Evaluated | Refused) -> web.StreamResponse:
    """The answer a browser gets from the gateway itself (redirect or accel delivery)."""
    if isinstance(result, Refused):
        return error_response(result.status, retry_after=result.status == 503)
    return gateway.responder.respond(
        result.decision, result.access, result.origin, result.identity, result.tokens, result.record,
        result.now,
    )  # fmt: skip


async def answer(
    request: web.Request,
    endpoint: str,
    method: str,
    raw_path: str,
    raw_query: str,
    render: Render,
    *,
    answer_key: Key | None = None,
) -> web.StreamResponse:
    """Run the pipeline for (method, path, query) with the request's headers, render the result,
    then log and count it. Shared by `/media/...` and nginx's `/auth` subrequests. With an
    `answer_key` (direct /media answers only) the answer is offered to the answer cache."""
    gateway = request.app[GATEWAY]
    started = time.perf_counter()
    rid = request_id(request, gateway.settings)
    fields: dict[str, Any] = {"request_id": rid, "method": method, "path": raw_path}
    if endpoint not in ("media", "legacy"):
        fields["endpoint"] = endpoint
    result: Evaluated | Refused
    try:
        result = await evaluate(
            gateway, method, raw_path, raw_query, request.headers,
            peer=request.remote, secure=request.secure, fields=fields,
        )  # fmt: skip
    except Exception:
        # A bug, not bad input: still one access line and one count, with the request id that
        # ties the traceback (logged here, never sent) to the answer the client saw.
        log.exception("request %s failed while deciding %s", rid, fields.get("asset_id", "a request"))
        fields["outcome"] = "error"
        result = Refused(500, "error")
    try:
        response = render(gateway, result)
    except Exception:
        log.exception("request %s: could not build the response for %s", rid, fields.get("asset_id", "?"))
        fields["outcome"] = "error"
        response = error_response(500)
    else:
        if answer_key is not None and gateway.answers is not None and isinstance(result, Evaluated):
            gateway.answers.store(
                answer_key, decision=result.decision, access=result.access, identity=result.identity,
                tokens=result.tokens, record=result.record, policy=result.policy, now=result.now,
                response=response, cache=gateway.store, verifier=gateway.verifier,
                responder=gateway.responder,
            )  # fmt: skip
    response.headers["X-Request-Id"] = rid
    fields["status"] = response.status
    rule = ""
    if isinstance(result, Evaluated):
        decision = result.decision
        rule = decision.rule
        fields.update(outcome=decision.action.value, rule=rule, policy_revision=decision.revision)
    identity = result.identity
    if identity is not None:
        if identity.user is not None:
            fields["subject"] = identity.user.sub
        if identity.preview is not None:
            fields["preview"] = identity.preview.sub
        if identity.rejected:
            # Why a presented token did not count: the reason only, never the token.
            fields["token_rejected"] = [f"{source}:{reason}" for source, reason in identity.rejected]
            for source, reason in identity.rejected:
                gateway.metrics.token_rejected(source, reason)
    _log_and_count(gateway, request, endpoint, fields, rule, started)
    return response


def _log_and_count(
    gateway: Gateway,
    request: web.Request,
    endpoint: str,
    fields: dict[str, Any],
    rule: str,
    started: float,
) -> None:
    """The request's one access line and its metrics, the same for full evaluations and cache hits."""
    elapsed = time.perf_counter() - started
    fields["duration_ms"] = round(elapsed * 1000, 3)
    fields.update(client_fields(request.remote, request.headers, gateway.parser.is_trusted))
    log_access(fields)
    gateway.metrics.observe(endpoint, fields["outcome"], rule, fields["status"], elapsed)


async def evaluate(
    gateway: Gateway,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    *,
    peer: str | None,
    secure: bool,
    fields: dict[str, Any],
) -> Evaluated | Refused:
    """parse → identify → lookup → decide. Adds what it learns to the access-log `fields`."""
    try:
        access, tokens, origin = gateway.parser.parse(
            method, raw_path, raw_query, headers, peer=peer, secure=secure
        )
    except NotAnAsset:
        fields["outcome"] = "not_found"
        return Refused(404, "not_found")
    except MethodNotAllowed:
        fields["outcome"] = "method_not_allowed"
        return Refused(405, "method_not_allowed")
    fields.update(host=access.host, route=access.route)
    if access.asset_id:  # a legacy request learns its id from the lookup
        fields["asset_id"] = access.asset_id

    now = gateway.clock()
    identity = identify(tokens, gateway.verifier, now)
    if identity.user is None and tokens.user and await learn_user_keys(tokens.user, gateway.verifier):
        identity = identify(tokens, gateway.verifier, now)  # the IdP rotated its keys
    try:
        found = await look_up(gateway.store, access)
    except RecordUnreadable:  # this id only; never served, never guessed
        fields["outcome"] = "record_unreadable"
        gateway.metrics.store_error()
        return Refused(503, "record_unreadable", identity)
    except StoreUnavailable:
        fields["outcome"] = "store_unavailable"
        gateway.metrics.store_error()
        return Refused(503, "store_unavailable", identity)

    access, record = found.request, found.record
    if access.asset_id:
        fields["asset_id"] = access.asset_id
    policy = gateway.policy.policy
    decision = decide(
        access, identity, record, policy, now,
        replacement=found.replacement, login_configured=gateway.responder.login_configured,
    )  # fmt: skip
    return Evaluated(decision, access, origin, identity, tokens, record, now, policy)
