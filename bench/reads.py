"""CPU per cache-missing record read, in process: `RedisAssetStore.get` (the Redis read and the
decode) for batches of K concurrent reads, as one event-loop turn of cold requests asks for them,
against a real redis-server. The cold row's Redis cost without aiohttp, wrk or the rest of the
pipeline around it, so a change to the read path shows through the noise of a busy machine.

    python -m bench.reads [--baseline DIR] [--batches 1,4,8,16] [--rounds 1500] [--repeat 3]

Each tree (this one, then DIR's copy) is measured in a process of its own, alternately `--repeat`
times on one redis-server; the best of each is printed (µs of process CPU per read). Under the
bench row's load a turn's batch holds ~8 reads on average (1 to 30).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench import fixtures
from bench.servers import Placement, free_port, redis_command, running

ASSETS = 2048


async def measure(port: int, batches: list[int], rounds: int) -> dict[int, float]:
    from gateway.state.factory import open_store

    store = open_store(f"redis://127.0.0.1:{port}/0")
    ids = [fixtures.cold_id(n) for n in range(ASSETS)]
    found: dict[int, float] = {}
    try:
        for size in batches:
            started, asked = time.process_time(), 0
            for n in range(rounds):
                first = n * size
                records = await asyncio.gather(*(store.get(ids[(first + i) % ASSETS]) for i in range(size)))
                if None in records:
                    raise RuntimeError("bench.reads: a seeded record is missing")
                asked += size
            found[size] = (time.process_time() - started) / asked * 1e6
    finally:
        await store.close()
    return found


def child(port: int, batches: list[int], rounds: int) -> None:
    """One measurement in this process, of the gateway on sys.path; prints a JSON line."""
    import uvloop

    print(json.dumps(uvloop.run(measure(port, batches, rounds))))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", help="a copy of the tree (a directory holding gateway/) to compare")
    parser.add_argument("--batches", default="1,4,8,16", help="reads per event-loop turn")
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # the redis port, in a child
    args = parser.parse_args()
    batches = [int(size) for size in args.batches.split(",")]
    if args.child:
        child(args.child, batches, args.rounds)
        return 0
    trees = [("this tree", fixtures.REPO)]
    if args.baseline:
        trees.append(("baseline", Path(args.baseline).resolve()))
    placement = Placement.detect()
    best: dict[str, dict[int, float]] = {name: {} for name, _ in trees}
    with tempfile.TemporaryDirectory(prefix="gateway-reads-") as tmp:
        port = free_port()
        with running(redis_command(port, Path(tmp), placement.load), port=port):
            client = redis.Redis(port=port)
            fixtures.seed(client, [fixtures.cold_id(n) for n in range(ASSETS)])
            client.close()
            for _ in range(args.repeat):
                for name, tree in trees:
                    # The tree first on the path, this repository's bench after it.
                    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(fixtures.REPO)])}
                    command = [sys.executable, "-m", "bench.reads", "--child", str(port), "--batches",
                               args.batches, "--rounds", str(args.rounds)]  # fmt: skip
                    if placement.server is not None:
                        command = ["taskset", "-c", placement.server, *command]
                    out = subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True,
                                         text=True).stdout  # fmt: skip
                    for size, us in json.loads(out.splitlines()[-1]).items():
                        best[name][int(size)] = min(best[name].get(int(size), us), us)
    print("µs of CPU per read (Redis read + decode), best of", args.repeat)
    for name, _ in trees:
        print(f"  {name:10}", "  ".join(f"batch {size}: {best[name][size]:6.1f}" for size in batches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
