"""Memory of a gateway process holding N cached records: the app built by the same factory as
`asset-gateway serve`, its cache filled through the real store (Redis read, JSON decode, validate).

    python -m bench.rss --config bench.toml --records 100000      # prints one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os

from bench.fixtures import bulk_id
from bench.servers import rss_bytes
from gateway.app import build_gateway, create_public_app
from gateway.runtime import run_async
from gateway.settings import load_settings

CONCURRENCY = 64


async def fill(config: str, records: int) -> dict[str, float]:
    settings = load_settings(config, os.environ)
    gateway = build_gateway(settings)
    app = create_public_app(gateway)
    gc.collect()
    before = rss_bytes(os.getpid())
    for start in range(0, records, CONCURRENCY):
        # Ids made per batch, as requests bring them: a list of them all would be counted as the
        # cache's, whose entries are keyed by the record's own copy of its id.
        ids = [bulk_id(n) for n in range(start, min(start + CONCURRENCY, records))]
        found = await asyncio.gather(*(gateway.store.get(i) for i in ids))
        if not all(found):
            raise SystemExit("bench.rss: some records are missing from Redis")
    del found, ids
    gc.collect()
    after = rss_bytes(os.getpid())
    cached = len(gateway.store)
    if cached != records:
        raise SystemExit(f"bench.rss: {cached} records cached, expected {records}")
    await gateway.store.close()
    del app
    mb = 1024 * 1024
    return {
        "records": cached,
        "rss_before_mb": before / mb,
        "rss_after_mb": after / mb,
        "bytes_per_record": (after - before) / cached,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(run_async(fill(args.config, args.records))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
