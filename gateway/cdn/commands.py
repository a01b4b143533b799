"""`asset-gateway cdn purge ID...`: purge assets at the CDN by hand. By default the hard purges go
on the shared queue (a running gateway sends them, retried until the CDN confirms); `--direct`
sends them from this command through the configured adapter and reports each."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from gateway.cdn.adapters import open_purger
from gateway.cdn.plan import Purge, manual_purge
from gateway.cdn.queue import RedisPurgeQueue
from gateway.records import ASSET_ID
from gateway.runtime import run_async
from gateway.settings import ConfigError, Settings
from gateway.state.base import StoreUnavailable
from gateway.state.factory import open_store
from gateway.state.redis import RedisAssetStore


def add_commands(commands: Any, group: Any, settings_from: Any) -> None:
    """Register `cdn purge` on the CLI's subparsers; `group(name, help)` makes a command of
    subcommands that prints its own help when given alone."""
    cdn = group("cdn", "the CDN in front of the gateway")
    text = "purge assets at the CDN (hard purges of their keys and /media paths)"
    purge = cdn.add_parser("purge", help=text, description=text)
    purge.add_argument("ids", nargs="+", metavar="ID", help="asset ids to purge")
    purge.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    purge.add_argument(
        "--direct", action="store_true", help="send now from this command instead of through the queue"
    )
    purge.set_defaults(run=lambda args: purge_command(settings_from(args), args.ids, direct=args.direct))


def purge_command(settings: Settings, ids: Sequence[str], *, direct: bool) -> int:
    bad = [asset_id for asset_id in ids if not ASSET_ID.fullmatch(asset_id)]
    if bad:
        raise ConfigError(f"ID: expected asset ids like 5a1b2c ([A-Za-z0-9_-], at most 64), got {bad[0]!r}")
    if settings.cdn.purge == "none":
        raise ConfigError("cdn.purge: is 'none', so no CDN is configured to purge")
    try:
        return run_async(_purge(settings, list(dict.fromkeys(ids)), direct))
    except StoreUnavailable as exc:
        print(f"asset-gateway: {exc}", file=sys.stderr)
        return 1


async def _purge(settings: Settings, ids: list[str], direct: bool) -> int:
    url = settings.state.url.reveal()
    if url.startswith("memory:"):
        raise ConfigError("state.url: memory:// lives inside one gateway process; point it at Redis")
    store = open_store(url)
    try:
        purges = [manual_purge(asset_id, await store.get(asset_id)) for asset_id in ids]
        if direct:
            return await _send(settings, purges)
        assert isinstance(store, RedisAssetStore)
        await RedisPurgeQueue(store.client).add(purges)
    finally:
        await store.close()
    print(f"queued {len(purges)} hard purge(s); a running gateway sends them")
    return 0


async def _send(settings: Settings, purges: list[Purge]) -> int:
    purger = open_purger(settings.cdn)
    assert purger is not None  # cdn.purge is not "none"
    try:
        results = await purger.purge(purges)
    finally:
        await purger.close()
    for purge, ok in zip(purges, results, strict=True):
        print(f"{purge.asset_id}: {'purged' if ok else 'NOT confirmed by the CDN'}")
    return 0 if all(results) else 1
