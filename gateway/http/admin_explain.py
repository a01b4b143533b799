"""`GET /explain?url=...` on the admin listener (admin token required): the decision this process
would make for one URL right now, with every rule considered and why, as JSON. Tokens to test with
travel in `X-Explain-Token` headers (one per token) so they stay out of URLs and logs; they come
back only masked."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from gateway.explanation import explain_request, explanation_json
from gateway.http.admin import json_error
from gateway.http.context import GATEWAY

TOKEN_HEADER = "X-Explain-Token"  # noqa: S105 - a header name, not a secret
MAX_TOKENS = 4


async def explain(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    url = request.query.get("url", "")
    host = request.query.get("host") or None
    method = request.query.get("method", "GET").upper()
    tokens = [t.strip() for t in request.headers.getall(TOKEN_HEADER, []) if t.strip()]
    details = []
    if not url:
        details.append("url: required, e.g. https://assets.example.org/media/{id}/{filename}")
    elif not urlsplit(url).netloc and not host:
        details.append("host: required when url has no host")
    if method not in ("GET", "HEAD"):
        details.append("method: expected GET or HEAD")
    if len(tokens) > MAX_TOKENS:
        details.append(f"{TOKEN_HEADER}: at most {MAX_TOKENS} tokens")
    if details:
        return json_error(400, "invalid", details=details)
    report = await explain_request(
        gateway.settings, url, tokens=tokens, host=host, method=method, store=gateway.store,
        store_shown="this process's store (cached)", policy=gateway.policy.policy, now=gateway.clock(),
    )  # fmt: skip
    response = web.json_response(explanation_json(report), status=503 if report.store_unavailable else 200)
    response.headers["Cache-Control"] = "no-store"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/explain", explain)
