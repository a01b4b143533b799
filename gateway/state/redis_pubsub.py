"""The Redis end of invalidation: subscribe to the channel the write script publishes on and hand
every id to a Subscriber (gateway.state.invalidation), resubscribing with backoff when the
connection drops, and noticing a server that went silent with a ping every `ping_interval`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.cluster import RedisCluster

from gateway.background import raise_if_cancelled
from gateway.state.base import Subscriber
from gateway.state.redis_client import INVALIDATION_CHANNEL, UNAVAILABLE, RedisClient

# The receiving end's logger: these lines read as they did when the loop lived there.
log = logging.getLogger("gateway.state.invalidation")


class SubscriptionSilent(Exception):
    """The server stopped answering on the subscription connection (e.g. a network partition)."""


async def listen(client: RedisClient, subscriber: Subscriber) -> None:
    """Until cancelled: subscribe, deliver, and on any failure tell the subscriber, pause as long
    as it says and subscribe again."""
    tries = 0  # picks the Cluster node to try, so a dead node is not tried forever
    while True:
        raise_if_cancelled()
        pubsub: Any = None
        try:
            pubsub = await _pubsub(client, tries)
            await pubsub.subscribe(INVALIDATION_CHANNEL)
            raise_if_cancelled()
            await _receive(pubsub, subscriber)
        except (*UNAVAILABLE, SubscriptionSilent) as exc:
            pause = subscriber.on_lost(f"{type(exc).__name__}: {str(exc)[:200]}")
        except Exception:
            # A bug here must not end invalidation for the life of the process: log it whole,
            # fall back to the TTL and try again after the pause below.
            log.exception("invalidation listener failed; resubscribing")
            pause = subscriber.on_lost("unexpected error")
        finally:
            if pubsub is not None:
                await _close(pubsub)
        tries += 1
        await asyncio.sleep(pause)


async def _pubsub(client: RedisClient, attempt: int) -> Any:
    """Single node and Sentinel: a connection from the client's own pool (Sentinel's follows the
    master). Cluster: any one node, since a PUBLISH reaches every node of the cluster; after a
    failure the next attempt tries the next node."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        nodes = client.get_nodes()
        return client.pubsub(node=nodes[attempt % len(nodes)])
    return client.pubsub()


async def _receive(pubsub: Any, subscriber: Subscriber) -> None:
    clock, ping_interval = subscriber.clock, subscriber.ping_interval
    heard = clock()
    while True:
        message = await pubsub.get_message(timeout=ping_interval)
        raise_if_cancelled()
        now = clock()
        if message is None:
            if now - heard > 1.5 * ping_interval:
                raise SubscriptionSilent(f"no answer for {now - heard:.1f}s")
            await pubsub.ping()
            raise_if_cancelled()
            continue
        heard = now
        kind = message["type"]
        if kind == "subscribe":
            # Also after redis-py reconnected and resubscribed by itself: we cannot know what
            # was published while the connection was down. Reported only now that the server
            # has confirmed the subscription, so no later write is missed.
            subscriber.on_subscribed(in_process=False)
        elif kind == "message":
            data = message["data"]
            subscriber.on_announced(data.decode("utf-8", "replace") if isinstance(data, bytes) else data)


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except UNAVAILABLE as exc:  # the connection is being dropped anyway
        log.debug("closing the invalidation subscription: %s", exc)
