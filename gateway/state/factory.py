"""Turn the `[state] url` setting into a store, so ops choose single node, Sentinel or Cluster by
URL alone and every deployment gets the same fail-fast, self-healing connection settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisClusterException, RedisError

from gateway.redaction import redact_url, scrub
from gateway.settings import STATE_URL_SCHEMES, ConfigError
from gateway.state.base import BulkAssetStore
from gateway.state.memory import MemoryAssetStore
from gateway.state.redis import RedisAssetStore, RedisClient

# Fail fast (the request answers 503 rather than hanging), then heal on its own: idle connections
# are checked before use and a command whose connection broke is retried on a fresh connection
# after a short pause, so a restarted Redis is picked up without restarting the gateway. A timeout
# is not retried: a server that did not answer in a second will not answer a retry sooner, and the
# store bounds each call as a whole anyway (gateway.state.redis.DEADLINE).
SOCKET_TIMEOUT = 1.0
HEALTH_CHECK_INTERVAL = 10
RETRIES = 2
SENTINEL_PORT = 26379


def connection_options() -> dict[str, Any]:
    """Fresh per client: a Retry object carries backoff state and must not be shared."""
    return {
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), RETRIES, supported_errors=(ConnectionError,)),
    }


def open_store(url: str, *, purge: bool = False) -> BulkAssetStore:
    """A store for `url`; options in a redis URL's query string override the defaults above.
    A URL that cannot be used raises ConfigError naming `state.url`, with the password masked
    (redis-py's own messages included: they may quote a piece of the URL).

    memory://                                      in-process (demo, tests)
    redis://, rediss://, unix://                   one Redis node
    redis+sentinel://h:p,h:p/service_name[/db]     the master Sentinel names for service_name
    redis+cluster://h:p[,h:p...], rediss+cluster://  Redis Cluster, discovered from the first of
                                                   those nodes that answers

    A `user:password@` in a sentinel URL authenticates to the master, not to the Sentinels.
    `purge`: every applied write that changes a live answer enqueues a CDN purge (gateway.cdn).
    """
    try:
        return _open(url, purge)
    except (ValueError, TypeError, RedisError, RedisClusterException) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"state.url: {scrub(reason, url)} (in {redact_url(url)})") from None


def _open(url: str, purge: bool) -> BulkAssetStore:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryAssetStore(purge=purge)
    if scheme in ("redis", "rediss", "unix"):
        return RedisAssetStore(redis.asyncio.from_url(url, **connection_options()), purge=purge)
    if scheme == "redis+sentinel":
        sentinel, master = _sentinel_master(url)
        return RedisAssetStore(master, also_close=sentinel.sentinels, purge=purge)
    if scheme in ("redis+cluster", "rediss+cluster"):
        plain, seeds = _cluster_seeds(scheme.removesuffix("+cluster") + url[len(scheme) :])
        client = RedisCluster.from_url(plain, startup_nodes=seeds, **connection_options())
        return RedisAssetStore(client, purge=purge)
    raise ValueError(f"state url must start with one of {', '.join(s + '://' for s in STATE_URL_SCHEMES)}")


def _sentinel_master(url: str) -> tuple[Sentinel, RedisClient]:
    """Sentinel URLs list several hosts in one netloc, which urllib cannot parse as an address."""
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = [_host_port(item, url) for item in hostlist.split(",") if item]
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not sentinels or not 1 <= len(segments) <= 2:
        expected = "redis+sentinel://host:port[,host:port...]/service_name[/db]"
        raise ValueError(f"expected {expected}")
    service = segments[0]
    try:
        db = int(segments[1]) if len(segments) == 2 else 0
    except ValueError:
        raise ValueError("the sentinel url's database must be an integer") from None
    # sentinel_kwargs too: by default the Sentinel connections would back off for seconds.
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        sentinels, sentinel_kwargs=connection_options(), **connection_options()
    )
    master = sentinel.master_for(
        service, db=db, username=unquote(username) or None, password=unquote(password) or None
    )
    return sentinel, master


def _cluster_seeds(url: str) -> tuple[str, list[ClusterNode]]:
    """More than one node may be listed, so the gateway can start while any one of them is down:
    the URL keeps the first (with the credentials and options), the rest become startup nodes."""
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    first, *others = hostlist.split(",")
    seeds = [ClusterNode(*_host_port(item, url, default_port=6379)) for item in others if item]
    return parts._replace(netloc=f"{userinfo}{at}{first}").geturl(), seeds


def _host_port(item: str, url: str, default_port: int = SENTINEL_PORT) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    port = port or str(default_port)
    if not host or not port.isdigit():
        raise ValueError(f"bad redis address {item!r}")
    return host, int(port)
