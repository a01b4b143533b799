"""The admin listener: a separate host/port for publishers (asset writes), ops (health, metrics,
explain). Everything but health and metrics needs `Authorization: Bearer <admin token>`, compared
in constant time; a missing or wrong token gets 401 and changes nothing."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.http.public import GATEWAY, Gateway

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
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


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


def create_admin_app(gateway: Gateway) -> web.Application:
    """Routes come from one module per concern; each exposes `add_routes(app)`."""
    from gateway.http import admin_explain, assets_api, health, metrics

    app = web.Application(middlewares=[require_admin_token], client_max_size=MAX_BODY_BYTES)
    app[GATEWAY] = gateway
    health.add_routes(app)
    metrics.add_routes(app)
    admin_explain.add_routes(app)
    assets_api.add_routes(app)
    if not gateway.settings.admin.token:
        log.warning("admin.token is not set: every admin request except health and metrics gets 401")
    return app
