"""Liveness and readiness for orchestrators and load balancers: no token needed, no detail that
would help an attacker beyond what ops need to act."""

from __future__ import annotations

from aiohttp import web

from gateway.http.public import GATEWAY
from gateway.state.base import StoreUnavailable


async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the state store answers and a policy is loaded."""
    gateway = request.app[GATEWAY]
    checks: dict[str, object] = {}
    ready = True
    try:
        await gateway.store.ping()
        checks["state"] = "ok"
    except StoreUnavailable:
        checks["state"] = "unreachable"
        ready = False
    checks["policy"] = {"revision": gateway.policy.policy.revision}
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
