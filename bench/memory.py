"""Memory per cached record: the gateway's RSS holding N records (bench/rss.py in its own process)
and Redis's `used_memory` growth for the same N records, at each size asked for.

Records are seeded in order (bulk ids 0..N-1), so measuring 100,000 then 1,000,000 seeds the first
batch once and only adds the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench import fixtures
from bench.servers import free_port


def used_memory(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


class Memory:
    """Seeds bulk records up to each size and measures both sides there."""

    def __init__(self, client: redis.Redis, directory: Path, redis_url: str, identity: fixtures.Identity,
                 env: dict[str, str]) -> None:  # fmt: skip
        self.client = client
        self.directory = directory
        self.redis_url = redis_url
        self.identity = identity
        self.env = env
        self.seeded = 0
        self.baseline = used_memory(client)  # before any bulk record

    def measure(self, records: int) -> dict[str, float]:
        started = time.monotonic()
        fixtures.seed_bulk(self.client, self.seeded, records)
        seed_seconds = time.monotonic() - started
        self.seeded = max(self.seeded, records)
        redis_per_record = (used_memory(self.client) - self.baseline) / records
        started = time.monotonic()
        rss = self.gateway_rss(records)
        return {
            **rss,
            "redis_bytes_per_record": redis_per_record,
            "seed_seconds": seed_seconds,
            "fill_seconds": time.monotonic() - started,
        }

    def gateway_rss(self, records: int) -> dict[str, float]:
        """A gateway process built by `serve`'s own factory, its cache filled through the store."""
        config = fixtures.write_config(
            self.directory, f"rss{records}", port=free_port(), admin_port=free_port(),
            redis_url=self.redis_url, identity=self.identity, cache_ttl=3600, cache_size=records,
        )  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "bench.rss", "--config", str(config), "--records", str(records)],
            env=self.env, cwd=str(fixtures.REPO), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"bench.rss failed: {done.stderr[-2000:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def describe(rss: dict[str, float]) -> str:
    return (
        f"RSS: {rss['rss_before_mb']:.0f} MB started, {rss['rss_after_mb']:.0f} MB holding "
        f"{int(rss['records']):,} cached records (~{rss['bytes_per_record']:.0f} bytes each); "
        f"Redis ~{rss['redis_bytes_per_record']:.0f} bytes each (INFO used_memory growth); "
        f"seeded in {rss['seed_seconds']:.1f} s, cache filled in {rss['fill_seconds']:.1f} s"
    )
