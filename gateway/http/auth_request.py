"""`GET /auth` for nginx `auth_request`: the decision `/media/...` would make for the request nginx is
handling (`X-Original-URI`, `X-Original-Method`, `Host`), told in the statuses an auth subrequest can
carry. nginx understands only 2xx, 401 and 403 there (anything else becomes a 500), so:

* allowed → 204 with `X-Asset-Location` (the presigned URL nginx fetches) and the served file's
  headers as `X-Asset-<Name>`;
* a login is needed → 401; anything else → 403. Both carry the answer the browser must get:
  `X-Asset-Status` (301, 302, 304, 404, 405, 410, 503...), and the direct answer's headers as
  `X-Asset-<Name>`, so a redirect's target is `X-Asset-Location`, a preview cookie `X-Asset-Set-Cookie`.

A publicly cacheable answer's CDN keys travel as `X-Asset-<cdn.key_header>` (DESIGN 2.9), in both cases.

`X-Asset-Location` always means "the Location of the direct answer": in redirect delivery a served
file is a 302 to the presigned URL, which nginx fetches instead of redirecting to it.
nginx/auth_request.conf.template turns these headers into the browser's answer.

A browser calling /auth itself learns nothing it could not get from the asset URL with the same
headers (the same decision, the same presigned URL); the shipped nginx configs answer /auth with 404.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from gateway.cdn.tags import key_header_value
from gateway.http.context import Gateway
from gateway.http.public import answer_warm, render_direct
from gateway.models import Action, HostKind
from gateway.pipeline import Evaluated, Refused
from gateway.responses import ASSET_LOCATION

log = logging.getLogger(__name__)

AUTH_PATH = "/auth"
ORIGINAL_URI = "X-Original-URI"
ORIGINAL_METHOD = "X-Original-Method"
PREFIX = "X-Asset-"
ASSET_STATUS = "X-Asset-Status"
# What of a direct answer nginx needs to rebuild it (besides the status).
_CARRIED = ("Location", "Cache-Control", "ETag", "X-Robots-Tag", "Retry-After", "Allow")

_warned_missing_uri = False


async def handle_auth(request: web.Request) -> web.StreamResponse:
    method, path, query = original_request(request.headers)
    return await answer_warm(request, "auth", method, path, query, render_auth)


def original_request(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """The method, raw path and raw query of the request nginx asks about."""
    original = headers.get(ORIGINAL_URI, "")
    if not original:
        _warn_missing_uri()
    method = headers.get(ORIGINAL_METHOD, "GET").strip().upper() or "GET"
    path, _, query = original.partition("?")
    return method, path, query


def render_auth(gateway: Gateway, result: Evaluated | Refused) -> web.StreamResponse:
    if isinstance(result, Evaluated):
        decision = result.decision
        serving = decision.action is Action.SERVE and not decision.not_modified
        if serving and result.access.host_kind is not HostKind.OTHER:  # else render_direct's 404
            assert result.record is not None
            responder = gateway.responder
            response = web.Response(status=204)
            response.headers[ASSET_STATUS] = "200"
            location = responder.presigned_url(decision, result.access, result.record, result.now)
            response.headers[ASSET_LOCATION] = location
            served = responder.served_headers(decision, result.record, result.now)
            served_keys = key_header_value(served["Cache-Control"], result.record, decision)
            if served_keys:
                served[responder.key_header] = served_keys
            for name, value in served.items():
                response.headers[PREFIX + name] = value
            return response
    direct = render_direct(gateway, result)
    login = isinstance(result, Evaluated) and result.decision.action is Action.LOGIN and direct.status == 302
    response = web.Response(status=401 if login else 403)
    response.headers[ASSET_STATUS] = str(direct.status)
    for name in (*_CARRIED, gateway.responder.key_header):
        for value in direct.headers.getall(name, ()):
            response.headers.add(PREFIX + name, value)
    # aiohttp keeps cookies aside until the response is sent; carry them the way it would send them.
    for morsel in direct.cookies.values():
        response.headers.add(PREFIX + "Set-Cookie", morsel.output(header="").strip())
    return response


def _warn_missing_uri() -> None:
    global _warned_missing_uri
    if not _warned_missing_uri:
        _warned_missing_uri = True
        log.warning(
            "/auth called without X-Original-URI: nginx needs "
            "`proxy_set_header X-Original-URI $request_uri;` in its auth location"
        )


def add_routes(app: web.Application) -> None:
    """Register before the public app's catch-all route: routes match in the order they were added."""
    app.router.add_get(AUTH_PATH, handle_auth)
