"""The application factories: the process container (gateway.http.context) and both listeners'
apps are built here from Settings, once; resources are opened and closed with the app's
lifecycle. Route modules only add routes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage

from gateway.background import spawn, stop
from gateway.cdn.adapters import Purger
from gateway.cdn.service import purge_worker
from gateway.http import admin_explain, assets_api, auth_request, health, metrics, oauth2
from gateway.http.admin import (
    MAX_BODY_BYTES,
    answer_every_request,
    our_server_header,
    require_admin_token,
    warn_without_token,
)
from gateway.http.answers import ANSWER_CACHE_SIZE, AnswerCache
from gateway.http.context import GATEWAY, Gateway
from gateway.http.public import handle_legacy, handle_media
from gateway.http.runner import LIMITS, SERVER_HEADER, WIRE_ANSWERER
from gateway.http.shortcut import answer_on_wire
from gateway.jwks import RemoteKeySet
from gateway.legacy import LEGACY_PREFIX
from gateway.metrics import Metrics
from gateway.oidc.relying_party import SignIn
from gateway.oidc.revocation import RevokedSessions
from gateway.parsing import RequestParser
from gateway.policy.reload import CurrentPolicy
from gateway.presign import Presigner, credentials_from_chain
from gateway.responses import Responder
from gateway.settings import Settings, listener_limits
from gateway.state.base import AssetStore
from gateway.state.cache import CachedAssetStore
from gateway.state.factory import open_store
from gateway.state.invalidation import InvalidationListener
from gateway.state.redis import RedisAssetStore
from gateway.tokens import TokenVerifier

# Seconds a starting process waits to hear invalidations before it takes traffic anyway.
INVALIDATION_STARTUP_WAIT = 2.0
# Seconds a starting process waits for the IdP's discovery document and keys (retried later).
SIGN_IN_STARTUP_WAIT = 5.0

log = logging.getLogger(__name__)


def build_gateway(
    settings: Settings,
    *,
    store: AssetStore | None = None,
    presigner: Presigner | None = None,
    policy: CurrentPolicy | None = None,
    answer_cache_size: int = ANSWER_CACHE_SIZE,
    clock: Callable[[], float] = time.time,
    cache_clock: Callable[[], float] = time.monotonic,
    purger: Purger | None = None,
) -> Gateway:
    """Wire the request pipeline. Raises ConfigError/PolicyError/ValueError on bad configuration.

    `answer_cache_size` 0 turns the finished-answer cache off; `clock` is the time decisions are
    made at and `cache_clock` the record cache's TTL clock (both injectable for tests); `purger`
    replaces the adapter `[cdn] purge` names."""
    purging = settings.cdn.purge != "none" or purger is not None
    backend = store if store is not None else open_store(settings.state.url.reveal(), purge=purging)
    cache = CachedAssetStore(
        backend, ttl=settings.state.cache_ttl, size=settings.state.cache_size, clock=cache_clock
    )
    key_sets = [RemoteKeySet(k.jwks_url, pinned_alg=k.alg) for k in settings.tokens.keys if k.jwks_url]
    signin = None
    if settings.oidc.enabled:
        client = backend.client if isinstance(backend, RedisAssetStore) else None
        revocations = RevokedSessions(settings.oidc.session_ttl, client, clock=clock)
        idp_keys = RemoteKeySet()  # its URL comes from discovery
        key_sets.append(idp_keys)
        signin = SignIn(settings.oidc, idp_keys, revocations, leeway=settings.tokens.leeway, clock=clock)
    verifier = TokenVerifier(
        settings.tokens,
        remote=key_sets,
        session_secrets=settings.oidc.session_secrets if signin is not None else (),
        revoked=signin.revocations.is_revoked if signin is not None else None,
    )
    metrics = Metrics()
    return Gateway(
        settings=settings,
        parser=RequestParser(settings),
        verifier=verifier,
        store=cache,
        policy=policy if policy is not None else CurrentPolicy(settings.policies.dir),
        responder=Responder(
            settings,
            presigner or Presigner(settings.s3, credentials_from_chain(settings.s3.region)),
        ),
        invalidations=InvalidationListener(cache),
        # An answer is only kept while the record it was made from stays cached: none without a cache.
        answers=(
            AnswerCache(answer_cache_size, revoked=verifier.revoked)
            if answer_cache_size > 0 and cache.enabled
            else None
        ),
        clock=clock,
        signin=signin,
        metrics=metrics,
        purges=purge_worker(settings.cdn, backend, metrics, purger) if purging else None,
    )


def create_public_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=1024)
    app[GATEWAY] = gateway
    # Request lines and header fields past `server.max_header_size` get a bare 400 before any of our
    # code runs (gateway.http.runner); tokens have their own limit (gateway.tokens.MAX_TOKEN_BYTES).
    app[LIMITS] = listener_limits(gateway.settings, admin=False)
    auth_request.add_routes(app)  # nginx auth_request; before the catch-all, routes match in order
    if gateway.signin is not None:
        oauth2.add_routes(app)
    # Every path reaches our handler, even one with a newline in it (which `.*` would not match),
    # so every answer is ours: no-store, request id, access line.
    app.router.add_route("*", LEGACY_PREFIX + r"{tail:[\s\S]*}", handle_legacy)
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle_media)

    def warm_hit(message: RawRequestMessage, peer: str | None, secure: bool) -> bytes | None:
        return answer_on_wire(gateway, message, peer, secure)

    app[WIRE_ANSWERER] = warm_hit  # answer-cache hits are written before aiohttp builds a request

    async def close_store(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[GATEWAY].store.close()

    app.cleanup_ctx.append(close_store)
    app.cleanup_ctx.append(_watch_policy)
    app.cleanup_ctx.append(_listen_for_invalidations)
    app.cleanup_ctx.append(_keep_keys_and_sessions)
    app.cleanup_ctx.append(_send_purges)
    app.on_response_prepare.append(_hide_server_header)
    return app


def create_admin_app(gateway: Gateway) -> web.Application:
    """Routes come from one module per concern; each exposes `add_routes(app)`."""
    app = web.Application(
        middlewares=[answer_every_request, require_admin_token], client_max_size=MAX_BODY_BYTES
    )
    app[GATEWAY] = gateway
    app[LIMITS] = listener_limits(gateway.settings, admin=True)
    app.on_response_prepare.append(our_server_header)
    health.add_routes(app)
    metrics.add_routes(app)
    admin_explain.add_routes(app)
    assets_api.add_routes(app)
    app.cleanup_ctx.append(metrics.publish_snapshots)
    warn_without_token(gateway.settings)
    return app


async def _watch_policy(app: web.Application) -> AsyncIterator[None]:
    """Policy hot reload runs exactly as long as the public listener does."""
    task = spawn(app[GATEWAY].policy.watch(), name="policy-watch")
    yield
    await stop(task)


async def _listen_for_invalidations(app: web.Application) -> AsyncIterator[None]:
    """Every process that serves runs one listener, so every worker's cache hears every write.
    Stopped before the store closes (cleanup runs in reverse)."""
    listener = app[GATEWAY].invalidations
    task = spawn(listener.run(), name="invalidation-listener")
    try:
        async with asyncio.timeout(INVALIDATION_STARTUP_WAIT):
            await listener.started()
    except TimeoutError:
        log.warning("not subscribed to invalidations yet; serving anyway, cache entries live out their TTL")
    yield
    await stop(task)


async def _keep_keys_and_sessions(app: web.Application) -> AsyncIterator[None]:
    """Fetched signing keys and (with [oidc]) discovery and shared session revocations: loaded
    before traffic when the IdP answers in time, kept current in the background, stopped before
    the store closes. An IdP that is down at start does not stop the gateway."""
    gateway = app[GATEWAY]
    signin = gateway.signin
    tasks = []
    if signin is not None:
        await signin.provider.open()
        tasks.append(spawn(signin.revocations.run(), name="session-revocations"))
    try:
        async with asyncio.timeout(SIGN_IN_STARTUP_WAIT):
            if signin is not None:
                await signin.prepare()
            await asyncio.gather(*(s.refresh() for s in gateway.verifier.remote_key_sets if s.url))
            if signin is not None:
                await signin.revocations.subscribed.wait()
    except TimeoutError:
        log.warning("identity provider keys or session revocations not ready yet; serving anyway")
    for index, source in enumerate(gateway.verifier.remote_key_sets):
        tasks.append(spawn(source.run(), name=f"jwks-refresh-{index}"))
    yield
    for task in tasks:
        await stop(task)
    if signin is not None:
        await signin.provider.close()


async def _send_purges(app: web.Application) -> AsyncIterator[None]:
    """One purge worker per serving process: the consumer group gives each purge to one of them,
    and a process that dies leaves its pending purges to the others (gateway.cdn.worker)."""
    worker = app[GATEWAY].purges
    if worker is None:
        yield
        return
    task = spawn(worker.run(), name="cdn-purges")
    yield
    await stop(task)
    await worker.purger.close()


async def _hide_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No software versions for scanners."""
    response.headers["Server"] = SERVER_HEADER
