"""The public listener: `GET|HEAD /media/{id}/{filename}` and the legacy `/government/uploads/...`
URLs (DESIGN 2.8). Gathers the request's inputs, runs the pipeline (gateway.pipeline), renders its
result, then logs and counts the answer; failures become bare statuses. Warm `/media` (and `/auth`)
requests may be answered from the answer cache (gateway.http.answers)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from aiohttp import web

from gateway.http.answers import CachedAnswer, Key, answer_key
from gateway.http.context import GATEWAY, Gateway
from gateway.models import Decision
from gateway.observability import client_fields, encode_fields, log_access_with, new_request_id
from gateway.pipeline import STORE_FAILURES, Evaluated, EvaluationFailed, Refused, Steps, evaluate
from gateway.responses import error_response

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

Render = Callable[[Gateway, "Evaluated | Refused"], web.StreamResponse]


def request_id(headers: Mapping[str, str], from_trusted_proxy: bool) -> str:
    """A proxy's X-Request-Id is kept only when the proxy is trusted and the id is plain."""
    given = headers.get("X-Request-Id")
    if given and from_trusted_proxy and _REQUEST_ID.fullmatch(given):
        return given
    return new_request_id()


def steps(gateway: Gateway) -> Steps:
    """The pipeline's collaborators in this process."""
    store = gateway.store
    return Steps(
        gateway.parser, gateway.verifier, store.get, store.get_by_legacy_path,
        gateway.responder.login_configured,
    )  # fmt: skip


async def handle_media(request: web.Request) -> web.StreamResponse:
    url = request.rel_url
    method, raw_path, raw_query = request.method, url.raw_path, url.raw_query_string
    return await answer_warm(request, "media", method, raw_path, raw_query, render_direct)


async def answer_warm(
    request: web.Request, endpoint: str, method: str, raw_path: str, raw_query: str, render: Render
) -> web.StreamResponse:
    """`answer`, from the answer cache when it holds exactly what a full evaluation would give
    (gateway.http.answers); otherwise in full, offering the result to the cache."""
    gateway = request.app[GATEWAY]
    key: Key | None = None
    answers = gateway.answers
    if answers is not None:
        try:
            key, hit = cached_answer(
                gateway,
                request.headers,
                request.remote,
                request.secure,
                endpoint,
                method,
                raw_path,
                raw_query,
            )
        except Exception:
            # A bug in the shortcut must not lose the request: the full evaluation still answers,
            # logs and counts it.
            log.exception("answer cache failed for %s; evaluating in full", raw_path[:200])
            key, hit = None, None
        if hit is not None:
            response = answers.response(hit.entry, hit.now, gateway.responder)
            response.headers["X-Request-Id"] = hit.request_id
            return response
    return await answer(request, endpoint, method, raw_path, raw_query, render, answer_key=key)


class Hit(NamedTuple):
    """A stored answer found for a request (already logged and counted), to be rendered for it."""

    entry: CachedAnswer
    now: float
    request_id: str


def cached_answer(
    gateway: Gateway,
    headers: Mapping[str, str],
    peer: str | None,
    secure: bool,
    endpoint: str,
    method: str,
    raw_path: str,
    raw_query: str,
) -> tuple[Key | None, Hit | None]:
    """The answer cache's key for this request, and its stored answer if that is still exactly what
    a full evaluation would give; a hit is logged and counted here, as the evaluation would be."""
    answers = gateway.answers
    assert answers is not None
    started = time.perf_counter()
    trusted = gateway.parser.is_trusted(peer)
    key = answer_key(method, raw_path, raw_query, headers, trusted, secure, endpoint=endpoint)
    if key is None:
        return None, None
    now = gateway.clock()
    entry = answers.lookup(key, now, gateway.policy.policy, gateway.store, gateway.responder)
    if entry is None:
        return key, None
    gateway.store.count_hit()  # the record lookup a full evaluation makes, from the cache
    rid = request_id(headers, trusted)
    encoded = entry.access_encoded
    if encoded is None:  # the entry's first hit: its access line's fields are the same every time
        encoded = entry.access_encoded = encode_fields(
            access_fields(endpoint, method, raw_path, entry.status, cached=entry)
        )
    decision = entry.decision
    _log_and_count(
        gateway, peer, headers, endpoint, rid, encoded, decision.action.value, decision.rule, entry.status,
        started,
    )  # fmt: skip
    return key, Hit(entry, now, rid)


async def handle_legacy(request: web.Request) -> web.StreamResponse:
    """A legacy Whitehall URL: the same pipeline, without the answer cache (its records are
    cached by path in the record cache)."""
    url = request.rel_url
    return await answer(request, "legacy", request.method, url.raw_path, url.raw_query_string, render_direct)


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
    then log and count it. Shared by `/media/...`, legacy URLs and nginx's `/auth` subrequests. With
    an `answer_key` the answer is offered to the answer cache."""
    gateway = request.app[GATEWAY]
    started = time.perf_counter()
    rid = request_id(request.headers, gateway.parser.is_trusted(request.remote))
    result: Evaluated | Refused
    try:
        result = await evaluate(
            steps(gateway), gateway.policy.policy, gateway.clock(), method, raw_path, raw_query,
            request.headers, peer=request.remote, secure=request.secure,
        )  # fmt: skip
    except Exception as exc:
        # A bug, not bad input: still one access line and one count, with the request id that
        # ties the traceback (logged here, never sent) to the answer the client saw.
        access = exc.access if isinstance(exc, EvaluationFailed) else None
        log.exception("request %s failed while deciding %s", rid, access.asset_id if access else "a request")
        result = Refused(500, "error", access=access)
    if isinstance(result, Refused) and result.outcome in STORE_FAILURES:
        gateway.metrics.store_error()
    failed = False
    try:
        response = render(gateway, result)
    except Exception:
        access = result.access
        log.exception(
            "request %s: could not build the response for %s", rid, access.asset_id if access else "?"
        )
        failed = True
        response = error_response(500)
    else:
        if answer_key is not None and gateway.answers is not None and isinstance(result, Evaluated):
            gateway.answers.store(
                answer_key, result, response, cache=gateway.store, verifier=gateway.verifier,
                responder=gateway.responder,
            )  # fmt: skip
    response.headers["X-Request-Id"] = rid
    fields = access_fields(endpoint, method, raw_path, response.status, result=result)
    if failed and not isinstance(result, Evaluated):
        fields["outcome"] = "error"  # an Evaluated result keeps the outcome that was decided
    if result.identity is not None:
        for source, reason in result.identity.rejected:
            gateway.metrics.token_rejected(source, reason)
    _log_and_count(
        gateway, request.remote, request.headers, endpoint, rid, encode_fields(fields), fields["outcome"],
        fields.get("rule", ""), response.status, started,
    )  # fmt: skip
    return response


def access_fields(
    endpoint: str,
    method: str,
    raw_path: str,
    status: int,
    *,
    result: Evaluated | Refused | None = None,
    cached: CachedAnswer | None = None,
) -> dict[str, Any]:
    """The fields of a request's access line that follow its request id, up to its duration, from a
    full evaluation's result or from the answer cache's entry: the same fields either way, so a
    cached answer is logged as it was first."""
    fields: dict[str, Any] = {"method": method, "path": raw_path}
    if endpoint not in ("media", "legacy"):
        fields["endpoint"] = endpoint
    decision: Decision | None = None
    subject = preview = None
    rejected: list[str] = []
    if cached is not None:
        fields.update(host=cached.host, route="media", asset_id=cached.asset_id)
        decision, subject, preview = cached.decision, cached.subject, cached.preview
    elif result is not None:
        if result.access is not None:
            fields.update(host=result.access.host, route=result.access.route)
            if result.access.asset_id:  # a legacy request learns its id from the lookup
                fields["asset_id"] = result.access.asset_id
        identity = result.identity
        if identity is not None:
            subject = identity.user.sub if identity.user is not None else None
            preview = identity.preview.sub if identity.preview is not None else None
            if identity.rejected:
                # Why a presented token did not count: the reason only, never the token.
                rejected = [f"{source}:{reason}" for source, reason in identity.rejected]
        if isinstance(result, Evaluated):
            decision = result.decision
        else:
            fields["outcome"] = result.outcome
    fields["status"] = status
    if decision is not None:
        fields.update(outcome=decision.action.value, rule=decision.rule, policy_revision=decision.revision)
    if subject is not None:
        fields["subject"] = subject
    if preview is not None:
        fields["preview"] = preview
    if rejected:
        fields["token_rejected"] = rejected
    return fields


def _log_and_count(
    gateway: Gateway,
    peer: str | None,
    headers: Mapping[str, str],
    endpoint: str,
    rid: str,
    encoded: str,
    outcome: str,
    rule: str,
    status: int,
    started: float,
) -> None:
    """The request's one access line (its id, the `access_fields` as `encoded`, its duration and
    client) and its metrics, the same for full evaluations and cache hits."""
    elapsed = time.perf_counter() - started
    last = {
        "duration_ms": round(elapsed * 1000, 3),
        **client_fields(peer, headers, gateway.parser.is_trusted),
    }
    log_access_with(rid, encoded, last)
    gateway.metrics.observe(endpoint, outcome, rule, status, elapsed)
