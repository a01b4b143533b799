"""The process container: everything a request on either listener needs, built once by
gateway.app and reached from a handler as `request.app[GATEWAY]`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.cdn.worker import PurgeWorker
from gateway.http.answers import AnswerCache
from gateway.metrics import Metrics
from gateway.oidc.relying_party import SignIn
from gateway.parsing import RequestParser
from gateway.policy.reload import CurrentPolicy
from gateway.responses import Responder
from gateway.settings import Settings
from gateway.state.cache import CachedAssetStore
from gateway.state.invalidation import InvalidationListener
from gateway.tokens import TokenVerifier


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
