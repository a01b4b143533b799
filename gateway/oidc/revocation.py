"""Revoked sessions, known to every gateway within moments (sign-out, back-channel logout).

A session token stays valid on its own until it expires; to end it sooner, its `sid` (or every
session of a `sub` issued up to an instant) is written to one Redis sorted set, scored by when the
record may be forgotten (the longest a session can live), and announced on a channel. Each process
keeps the set in memory, so checking a request is a dict lookup, never I/O. A process that
(re)subscribes reloads the whole set, so a message missed while disconnected is not lost. With the
`memory://` store there is one process and the set lives only in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster

from gateway.background import raise_if_cancelled
from gateway.models import UserIdentity
from gateway.state.redis import UNAVAILABLE, RedisClient

log = logging.getLogger(__name__)

REVOKED_KEY: Final = "asset-gateway:revoked-sessions"
REVOKED_CHANNEL: Final = "asset-gateway:revoked-sessions"
MAX_IN_MEMORY: Final = 1_000_000  # revocations remembered per process (each lives a session TTL)
RETRY_CAP: Final = 1.0
PING_INTERVAL: Final = 5.0


class RevokedSessions:
    """The revocations one process knows, and the Redis link that shares them."""

    def __init__(
        self,
        session_ttl: int,
        client: RedisClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl = session_ttl
        self._client = client
        self._clock = clock
        self._sids: dict[str, float] = {}  # sid -> when the record may be forgotten
        self._subs: dict[str, tuple[float, float]] = {}  # sub -> (revoked up to, forget at)
        self.status = "in-process" if client is None else "starting"
        self.subscribed = asyncio.Event()
        self.received = 0
        if client is None:
            self.subscribed.set()

    def is_revoked(self, user: UserIdentity) -> bool:
        if user.sid is None:
            return False
        if user.sid in self._sids:
            return True
        by_sub = self._subs.get(user.sub)
        return by_sub is not None and (user.issued_at is None or user.issued_at <= by_sub[0])

    async def revoke(self, *, sid: str | None = None, sub: str | None = None) -> None:
        """Revoke one session (`sid`) or every session of `sub` issued until now, here at once and
        everywhere through Redis. Raises when Redis cannot take it (the caller answers 5xx)."""
        if not sid and not sub:
            raise ValueError("revoke needs a sid or a sub")
        now = self._clock()
        record: dict[str, Any] = {"sid": sid} if sid else {"sub": sub, "before": now}
        forget_at = now + self._ttl
        self._apply(record, forget_at)
        if self._client is None:
            return
        member = json.dumps(record, sort_keys=True, separators=(",", ":"))
        await self._client.zadd(REVOKED_KEY, {member: forget_at})
        await self._client.zremrangebyscore(REVOKED_KEY, "-inf", now)
        await self._client.publish(REVOKED_CHANNEL, json.dumps([member, forget_at]))

    def _apply(self, record: dict[str, Any], forget_at: float) -> None:
        if len(self._sids) + len(self._subs) >= MAX_IN_MEMORY:
            self._forget_expired()
        sid, sub = record.get("sid"), record.get("sub")
        if isinstance(sid, str) and sid:
            self._sids[sid] = max(forget_at, self._sids.get(sid, 0.0))
        elif isinstance(sub, str) and sub and isinstance(record.get("before"), int | float):
            before = float(record["before"])
            old = self._subs.get(sub)
            if old is None or old[0] < before:
                self._subs[sub] = (before, forget_at)

    def _forget_expired(self) -> None:
        now = self._clock()
        self._sids = {sid: at for sid, at in self._sids.items() if at > now}
        self._subs = {sub: v for sub, v in self._subs.items() if v[1] > now}

    def _apply_member(self, member: bytes | str, forget_at: float) -> None:
        try:
            record = json.loads(member)
        except ValueError:
            log.warning("ignoring a malformed session revocation")
            return
        if isinstance(record, dict):
            self.received += 1
            self._apply(record, forget_at)

    async def _reload(self, client: RedisClient) -> None:
        entries = await client.zrangebyscore(REVOKED_KEY, self._clock(), "+inf", withscores=True)
        for member, score in entries:
            self._apply_member(member, float(score))

    async def run(self) -> None:
        """Listen for revocations made by other processes, for the life of this one."""
        client = self._client
        if client is None:
            await asyncio.Event().wait()
            return
        failures = 0
        while True:
            raise_if_cancelled()
            pubsub: Any = None
            try:
                if isinstance(client, RedisCluster):
                    await client.initialize()
                    nodes = client.get_nodes()
                    pubsub = client.pubsub(node=nodes[failures % len(nodes)])
                else:
                    pubsub = client.pubsub()
                await pubsub.subscribe(REVOKED_CHANNEL)
                await self._receive(pubsub, client)
            except UNAVAILABLE as exc:
                failures += 1
                self._lost(type(exc).__name__, failures)
            except Exception:
                failures += 1
                log.exception("session revocation listener failed; resubscribing")
                self._lost("unexpected error", failures)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*UNAVAILABLE):
                        await pubsub.aclose()
            await asyncio.sleep(min(RETRY_CAP, 0.05 * 2 ** min(failures, 10)))

    async def _receive(self, pubsub: Any, client: RedisClient) -> None:
        while True:
            message = await pubsub.get_message(timeout=PING_INTERVAL)
            raise_if_cancelled()
            if message is None:
                await pubsub.ping()
                raise_if_cancelled()
                continue
            if message["type"] == "subscribe":
                # Whatever was published while we were not listening is in the sorted set.
                await self._reload(client)
                self.status = "subscribed"
                self.subscribed.set()
            elif message["type"] == "message":
                try:
                    member, forget_at = json.loads(message["data"])
                    self._apply_member(member, float(forget_at))
                except (ValueError, TypeError):
                    log.warning("ignoring a malformed session revocation message")

    def _lost(self, reason: str, failures: int) -> None:
        self.subscribed.clear()
        self.status = "reconnecting"
        if failures == 1:
            log.warning("session revocation channel lost (%s); reconnecting", reason)
