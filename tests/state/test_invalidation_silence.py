"""The listener's own silence check, on a scripted subscription and a clock the test moves: a quiet
server that answers PING is kept, one that stops answering is left after one unanswered PING
(silence longer than 1.5 ping intervals) and the subscription is re-established with the cache
cleared. Against a real redis-server (tests/state/test_invalidation.py) redis-py's own socket
timeout can notice a hung server first, so only here is the check itself on trial."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import pytest

from gateway.background import spawn, stop
from gateway.models import AssetRecord
from gateway.records import record_to_dict
from gateway.state.cache import CachedAssetStore
from gateway.state.invalidation import InvalidationListener
from gateway.state.redis import RedisAssetStore

pytestmark = pytest.mark.asyncio

PING_INTERVAL = 0.5  # not 1: 1.5 * 1 == 1.5 / 1 == 1.5 ** 1 would hide a wrong threshold
DEADLINE = 10.0  # seconds of wall-clock time the scripted exchanges may take under load


class Clock:
    """Moved only by the subscription below, by the timeout a real one would have waited."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedPubSub:
    """A subscription whose server either answers every PING at once or never answers again.
    Its first timeout waits for `begin`; after `rounds` timeouts the script is over: it then waits
    without end, like an idle server whose PINGs are not due yet, so the test can look at the
    listener."""

    def __init__(self, clock: Clock, *, answers_pings: bool, rounds: int) -> None:
        self.clock = clock
        self.answers_pings = answers_pings
        self.rounds = rounds
        self.pending: deque[dict[str, Any]] = deque()
        self.timeouts = 0
        self.pings = 0
        self.closed = False
        self.begin = asyncio.Event()
        self.begin.set()
        self.over = asyncio.Event()

    async def subscribe(self, channel: str) -> None:
        self.pending.append({"type": "subscribe", "channel": channel.encode(), "data": 1})

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 - redis-py's
        await asyncio.sleep(0)  # a real read yields to the loop
        if self.pending:
            return self.pending.popleft()
        await self.begin.wait()
        if self.timeouts == self.rounds:
            self.over.set()
            await asyncio.Event().wait()
        self.timeouts += 1
        self.clock.now += timeout  # nothing arrived for the whole timeout
        return None

    async def ping(self) -> None:
        self.pings += 1
        if self.answers_pings:
            self.pending.append({"type": "pong", "channel": None, "data": b""})

    async def aclose(self) -> None:
        self.closed = True


class ScriptedRedis:
    """Just enough of redis-py's client for RedisAssetStore and the listener: its subscriptions
    come from the script, in order, and it holds one stored record."""

    def __init__(self, subscriptions: list[ScriptedPubSub], stored: AssetRecord) -> None:
        self.subscriptions = deque(subscriptions)
        self.stored = stored

    def register_script(self, script: str) -> object:
        return object()

    def pubsub(self) -> ScriptedPubSub:
        return self.subscriptions.popleft()

    async def hget(self, key: str, field: str) -> bytes | None:
        return json.dumps(record_to_dict(self.stored)).encode() if self.stored.id in key else None


RECORD = AssetRecord(id="a1", version=1, object_key="k-a1", filename="f.pdf")


async def listen(*subscriptions: ScriptedPubSub) -> tuple[InvalidationListener, asyncio.Task[None]]:
    clock = subscriptions[0].clock
    redis_client: Any = ScriptedRedis(list(subscriptions), RECORD)
    cache = CachedAssetStore(RedisAssetStore(redis_client), ttl=300, size=10)
    listener = InvalidationListener(cache, ping_interval=PING_INTERVAL, retry_first=0.001, clock=clock)
    task = spawn(listener.run(), name="invalidation-listener")
    await asyncio.wait_for(listener.subscribed.wait(), DEADLINE)
    return listener, task


async def test_a_quiet_server_that_answers_ping_is_kept() -> None:
    alive = ScriptedPubSub(Clock(), answers_pings=True, rounds=12)
    listener, task = await listen(alive)
    try:
        await asyncio.wait_for(alive.over.wait(), DEADLINE)
        # Twelve intervals without a message, each ended by a PING the server answered.
        assert (alive.timeouts, alive.pings) == (12, 12)
        assert (listener.status, listener.subscriptions) == ("subscribed", 1)
        assert not alive.closed
    finally:
        await stop(task)


async def test_a_server_that_stops_answering_is_left_after_one_unanswered_ping() -> None:
    clock = Clock()
    silent = ScriptedPubSub(clock, answers_pings=False, rounds=12)
    after = ScriptedPubSub(clock, answers_pings=True, rounds=0)
    silent.begin.clear()
    listener, task = await listen(silent, after)
    try:
        assert await listener.cache.get(RECORD.id) == RECORD
        assert len(listener.cache) == 1
        silent.begin.set()
        await asyncio.wait_for(after.over.wait(), DEADLINE)
        # One interval of silence: PING. Two (more than 1.5): the connection is given up.
        assert (silent.timeouts, silent.pings, silent.closed) == (2, 1, True)
        assert (listener.status, listener.subscriptions) == ("subscribed", 2)
        assert len(listener.cache) == 0  # whatever was published meanwhile is forgotten
    finally:
        await stop(task)
