"""The admin listener's middleware: a separate host/port for publishers (asset writes) and ops
(health, metrics, explain); gateway.app builds the app and each route module adds its routes.
Everything but health and metrics needs `Authorization: Bearer <admin token>`, compared in constant
time; a missing or wrong token gets 401 and changes nothing."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.http.context import GATEWAY
from gateway.http.runner import NO_STORE, SERVER_HEADER
from gateway.observability import client_fields, log_access, new_request_id
from gateway.settings import Settings

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapers carry no token
MAX_BODY_BYTES = 256 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, error: str, **extra: object) -> web.Response:
    """Errors with a stable snake_case code; never the caller's input echoed back."""
    response = web.json_response({"error": error, **extra}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _token_matches(given: str, expected: str) -> bool:
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates: encode them back as bytes.
    return bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


@web.middleware
async def answer_every_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every admin answer, the router's 404/405 and any failure included, carries our Server
    header and a request id, is never stored by a cache when it is an error, and gets one access
    line. An unexpected exception is logged here and answers a bare 500 with no detail."""
    started = time.perf_counter()
    rid = new_request_id()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # the router's 404 and 405
        response = json_error(exc.status, _ERROR_CODES.get(exc.status, "error"))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except ConnectionError:
        raise  # the client went away: nobody to answer
    except Exception:
        log.exception("admin request %s failed", rid)
        response = json_error(500, "internal_error")
    response.headers["X-Request-Id"] = rid
    if response.status >= 400 and "no-store" not in response.headers.get("Cache-Control", ""):
        response.headers["Cache-Control"] = NO_STORE
    fields = {"request_id": rid, "listener": "admin", "method": request.method,
              "path": request.rel_url.raw_path, "status": response.status,
              "duration_ms": round((time.perf_counter() - started) * 1000, 3)}  # fmt: skip
    fields.update(client_fields(request.remote, request.headers, request.app[GATEWAY].parser.is_trusted))
    log_access(fields)
    return response


_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


async def our_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


@web.middleware
async def require_admin_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS:
        return await handler(request)
    expected = request.app[GATEWAY].settings.admin.token.reveal()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not _token_matches(given.strip(), expected):
        response = json_error(401, "unauthorized")
        response.headers["WWW-Authenticate"] = 'Bearer realm="asset-gateway admin"'
        return response
    return await handler(request)


def warn_without_token(settings: Settings) -> None:
    """Said once when the admin app is built: an unset token locks the API, it never opens it."""
    if not settings.admin.token:
        log.warning("admin.token is not set: every admin request except health and metrics gets 401")
