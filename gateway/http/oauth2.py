"""`/oauth2/*` on the public listener (DESIGN 2.7): sign-in start and callback, sign-out, and the
IdP's back-channel logout. Handlers gather inputs, call gateway.oidc and turn refusals into bare
statuses; reasons go to the access log, never to the browser. Only configured hosts are served."""

from __future__ import annotations

import logging
import time
from typing import Any, Final
from urllib.parse import parse_qs

from aiohttp import web

from gateway.http.context import GATEWAY, Gateway
from gateway.http.public import request_id
from gateway.models import HostKind
from gateway.observability import log_access
from gateway.oidc.flow import FLOW_COOKIE_PREFIX, FLOW_TTL, MAX_FLOW_COOKIES, STATE_PATTERN, SignInError
from gateway.oidc.provider import ProviderError
from gateway.oidc.relying_party import CALLBACK_PATH, SignIn
from gateway.parsing import Origin
from gateway.responses import NO_STORE, error_response

log = logging.getLogger(__name__)

FLOW_COOKIE_PATH: Final = "/oauth2/"
MAX_LOGOUT_BODY: Final = 16 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_get("/oauth2/start", start, allow_head=False)
    app.router.add_get(CALLBACK_PATH, callback, allow_head=False)
    app.router.add_route("GET", "/oauth2/sign_out", sign_out)
    app.router.add_route("POST", "/oauth2/sign_out", sign_out)
    app.router.add_post("/oauth2/backchannel_logout", backchannel_logout)


def _context(request: web.Request) -> tuple[Gateway, SignIn, Origin] | None:
    """The gateway, its sign-in and the browser's origin, or None (404) when sign-in is off or the
    Host is not one we serve: a Location or cookie never names a host we do not own."""
    gateway = request.app[GATEWAY]
    signin = gateway.signin
    origin = gateway.parser.origin(request.headers, request.remote, request.secure)
    if signin is None or gateway.parser.host_kind(origin.hostname) is HostKind.OTHER:
        return None
    return gateway, signin, origin


def _base(origin: Origin) -> str:
    netloc = origin.hostname if origin.port is None else f"{origin.hostname}:{origin.port}"
    return f"{origin.scheme}://{netloc}"


def _redirect(location: str) -> web.Response:
    response = web.Response(status=302)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = NO_STORE
    return response


def _forget_flow(response: web.Response, name: str, secure: bool) -> None:
    response.del_cookie(name, path=FLOW_COOKIE_PATH, secure=secure, httponly=True, samesite="Lax")


def _refused(status: int) -> web.Response:
    if status == 400:
        response = web.Response(status=400, text="Sign-in did not complete. Please open the page again.\n")
        response.headers["Cache-Control"] = NO_STORE
        return response
    return error_response(status, retry_after=status == 503)


def _finish(
    request: web.Request, response: web.Response, started: float, outcome: str, **extra: Any
) -> web.Response:
    """One access-log line per request (the path without its query: it carries codes and state)."""
    gateway = request.app[GATEWAY]
    rid = request_id(request.headers, gateway.parser.is_trusted(request.remote))
    response.headers["X-Request-Id"] = rid
    elapsed = time.perf_counter() - started
    fields = {"request_id": rid, "method": request.method, "path": request.rel_url.raw_path,
              "endpoint": "oauth2", "status": response.status, "outcome": outcome, **extra,
              "duration_ms": round(elapsed * 1000, 3)}  # fmt: skip
    log_access(fields)
    gateway.metrics.observe("oauth2", outcome, "", response.status, elapsed)
    return response


async def start(request: web.Request) -> web.Response:
    started = time.perf_counter()
    context = _context(request)
    if context is None:
        return _finish(request, error_response(404), started, "not_found")
    _, signin, origin = context
    try:
        url, flow, sealed = await signin.start(
            request.rel_url.query.get("return_to"), _base(origin) + CALLBACK_PATH
        )
    except ProviderError as exc:
        return _finish(request, _refused(503), started, "provider_unavailable", reason=exc.code)
    response = _redirect(url)
    secure = origin.scheme == "https"
    pending = sorted(name for name in request.cookies if name.startswith(FLOW_COOKIE_PREFIX))
    for name in pending[: max(0, len(pending) - (MAX_FLOW_COOKIES - 1))]:
        _forget_flow(response, name, secure)
    response.set_cookie(
        flow.cookie_name, sealed, max_age=FLOW_TTL, path=FLOW_COOKIE_PATH, httponly=True, samesite="Lax",
        secure=secure,
    )  # fmt: skip
    return _finish(request, response, started, "sign_in_started")


async def callback(request: web.Request) -> web.Response:
    started = time.perf_counter()
    context = _context(request)
    if context is None:
        return _finish(request, error_response(404), started, "not_found")
    gateway, signin, origin = context
    query = request.rel_url.query
    state = query.get("state", "")
    if STATE_PATTERN.fullmatch(state) is None:
        return _finish(request, _refused(400), started, "sign_in_refused", reason="state_missing")
    cookie_name = FLOW_COOKIE_PREFIX + state
    sealed = request.cookies.get(cookie_name)
    secure = origin.scheme == "https"

    def refused(reason: str) -> web.Response:
        response = _refused(400)
        if sealed is not None:
            _forget_flow(response, cookie_name, secure)
        return _finish(request, response, started, "sign_in_refused", reason=reason)

    if sealed is None:
        return refused("no_flow_cookie")  # forged, replayed, or from another browser
    try:
        flow = signin.open_flow(sealed, state)
        if flow.redirect_uri != _base(origin) + CALLBACK_PATH:
            raise SignInError("wrong_host")
        if "error" in query:
            raise SignInError("provider_refused")
        if "iss" in query and query["iss"] != signin.settings.issuer:
            raise SignInError("wrong_issuer")  # RFC 9207: the answer came from another provider
        code = query.get("code", "")
        if not code or len(code) > 2048:
            raise SignInError("no_code")
        signed_in = await signin.finish(flow, code)
    except SignInError as exc:
        return refused(exc.code)
    except ProviderError as exc:
        return refused(f"provider_{exc.code}")
    except Exception:
        log.exception("sign-in callback failed")
        return refused("internal_error")
    response = _redirect(_base(origin) + signed_in.return_to)
    _forget_flow(response, cookie_name, secure)
    response.set_cookie(
        gateway.settings.tokens.session_cookie, signed_in.token, max_age=signin.settings.session_ttl,
        path="/", httponly=True, samesite="Lax", secure=secure,
    )  # fmt: skip
    return _finish(request, response, started, "signed_in", subject=signed_in.session.sub)


async def sign_out(request: web.Request) -> web.Response:
    started = time.perf_counter()
    context = _context(request)
    if context is None:
        return _finish(request, error_response(404), started, "not_found")
    gateway, signin, origin = context
    cookie_name = gateway.settings.tokens.session_cookie
    token = request.cookies.get(cookie_name)
    user = gateway.verifier.verify_user(token, gateway.clock()) if token else None
    extra: dict[str, Any] = {}
    if user is not None and user.sid is not None:
        extra["subject"] = user.sub
        try:
            await signin.revocations.revoke(sid=user.sid)
        except Exception as exc:  # the cookie still goes; this process already forgot the session
            log.error("could not share the revocation of a session: %s", type(exc).__name__)
    target = signin.end_session_url(None, _base(origin) + "/") or _base(origin) + "/"
    response = _redirect(target)
    response.del_cookie(cookie_name, path="/", secure=origin.scheme == "https", httponly=True, samesite="Lax")
    return _finish(request, response, started, "signed_out", **extra)


async def backchannel_logout(request: web.Request) -> web.Response:
    started = time.perf_counter()
    context = _context(request)
    if context is None:
        return _finish(request, error_response(404), started, "not_found")
    _, signin, _ = context
    body = await request.content.read(MAX_LOGOUT_BODY + 1)
    if len(body) > MAX_LOGOUT_BODY or request.content_type != "application/x-www-form-urlencoded":
        return _finish(request, _json(400, "invalid_request"), started, "logout_refused", reason="bad_body")
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=False, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return _finish(request, _json(400, "invalid_request"), started, "logout_refused", reason="bad_body")
    tokens = form.get("logout_token", [])
    if len(tokens) != 1:
        return _finish(request, _json(400, "invalid_request"), started, "logout_refused", reason="no_token")
    try:
        _, sub = await signin.backchannel_logout(tokens[0])
    except SignInError as exc:
        return _finish(request, _json(400, "invalid_request"), started, "logout_refused", reason=exc.code)
    except ProviderError as exc:
        return _finish(request, _refused(503), started, "logout_failed", reason=exc.code)
    except Exception as exc:
        log.error("could not record a back-channel logout: %s", type(exc).__name__)
        return _finish(request, _refused(503), started, "logout_failed", reason="store_unavailable")
    response = web.Response(status=200)
    response.headers["Cache-Control"] = NO_STORE
    return _finish(request, response, started, "logged_out", **({"subject": sub} if sub else {}))


def _json(status: int, error: str) -> web.Response:
    response = web.json_response({"error": error}, status=status)
    response.headers["Cache-Control"] = NO_STORE
    return response
