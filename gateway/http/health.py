"""Liveness and readiness for orchestrators and load balancers: no token needed, no detail that
would help an attacker beyond what ops need to act."""

from __future__ import annotations

from aiohttp import web

from gateway.http.context import GATEWAY
from gateway.state.base import StoreUnavailable


async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the state store answers and a policy is loaded (a failed reload shows as an error
    next to the revision still serving)."""
    gateway = request.app[GATEWAY]
    checks: dict[str, object] = {}
    ready = True
    try:
        await gateway.store.ping()
        checks["state"] = "ok"
    except StoreUnavailable:
        checks["state"] = "unreachable"
        ready = False
    # A failed reload leaves the process ready: it still serves the last good policy, and taking
    # every gateway out of the load balancer over one bad edit would turn a typo into an outage.
    current = gateway.policy
    checks["policy"] = {
        "revision": current.policy.revision,
        "error": [str(problem) for problem in current.last_error or ()],
        "reload_failures": current.reload_failures,
    }
    # Reported, not required: while the channel is down cached records still expire by TTL.
    listener = gateway.invalidations
    checks["invalidation"] = {"status": listener.status, "subscriptions": listener.subscriptions}
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
