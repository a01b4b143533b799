"""The legacy path index at scale (DESIGN 2.8): Redis memory and `asset import` rate for N records
with legacy paths, against the same records without, and the extrapolation to 1.5 million.

    python -m bench.legacy_index [--records 100000] [--rounds 3] [--json FILE]

Each run uses a fresh redis-server on a free loopback port. The paths look like Whitehall's
(`/government/uploads/system/uploads/attachment_data/file/<n>/<name>.pdf`, names of 10-40
characters, one in ten non-ASCII). Results and the method: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench.servers import free_port, redis_command, running
from gateway.importer import Importer
from gateway.state.factory import open_store

TARGET = 1_500_000
WORDS = ("budget", "spring", "statement", "annex", "guidance", "consultation", "response", "report",
         "impact", "assessment", "data", "tables", "summary", "résumé", "évaluation", "2014")  # fmt: skip


@dataclass
class Measured:
    records: int
    used_memory_without: int  # bytes, INFO memory used_memory after importing without paths
    used_memory_with: int  # the same records with legacy paths
    index_keys: int
    index_key_bytes_sampled: float  # MEMORY USAGE averaged over a sample of index keys
    import_rate_without: float  # records/s
    import_rate_with: float

    def per_record(self) -> float:
        return (self.used_memory_with - self.used_memory_without) / self.records

    def extrapolated(self) -> dict[str, Any]:
        per = self.per_record()
        return {
            "records": TARGET,
            "legacy_overhead_bytes_per_record": round(per, 1),
            "legacy_overhead_mb": round(per * TARGET / 2**20, 1),
            "total_used_memory_mb": round(self.used_memory_with / self.records * TARGET / 2**20, 1),
            "import_minutes_with_paths": round(TARGET / self.import_rate_with / 60, 1),
        }


def record_lines(count: int, *, legacy: bool) -> list[str]:
    chooser = random.Random(1)
    lines = []
    for n in range(count):
        words = chooser.sample(WORDS, chooser.randint(2, 5))
        name = "-".join(w for w in words if w.isascii() or n % 10 == 0) or "file"
        record: dict[str, Any] = {
            "id": f"wh{n:07}", "version": 1, "object_key": f"uploads/{n:07}", "filename": f"{name}.pdf",
            "content_type": "application/pdf", "etag": f'"{n:x}-1"', "last_modified": "2014-03-19T10:00:00Z",
        }  # fmt: skip
        if legacy:
            record["legacy_url_path"] = (
                f"/government/uploads/system/uploads/attachment_data/file/{n}/{name}.pdf"
            )
            record["legacy_etag"] = f'"{n:x}-nfs"'
        lines.append(json.dumps(record, ensure_ascii=False))
    return lines


async def import_into(url: str, source: Path) -> float:
    store = open_store(url)
    summary = await Importer(source, store).run()
    await store.close()
    if summary.written == 0 or summary.failed or summary.stopped:
        raise SystemExit(f"bench: import failed: {summary.counts()} {summary.stopped}")
    return summary.rate()


def measure(records: int, rounds: int) -> Measured:
    """`rounds` alternating imports of each kind: the best rate of each (the machine is shared, so
    the best is the least disturbed), the memory of the last (it does not vary)."""
    results: dict[bool, tuple[int, float, int, float]] = {}
    best: dict[bool, float] = {False: 0.0, True: 0.0}
    with tempfile.TemporaryDirectory(prefix="bench-legacy-") as tmp:
        for legacy in (False, True) * rounds:
            source = Path(tmp) / f"records-{legacy}.ndjson"
            source.write_text("\n".join(record_lines(records, legacy=legacy)) + "\n", encoding="utf-8")
            port = free_port()
            with running(redis_command(port, Path(tmp), None), port=port):
                url = f"redis://127.0.0.1:{port}/0"
                rate = asyncio.run(import_into(url, source))
                client = redis.Redis(port=port)
                used = int(client.info("memory")["used_memory"])
                keys = [key for key in client.scan_iter(match="legacy:*", count=1000)]
                sample = keys[:: max(1, len(keys) // 1000)]
                sizes = [client.memory_usage(key) or 0 for key in sample]
                client.close()
            best[legacy] = max(best[legacy], rate)
            results[legacy] = (used, rate, len(keys), sum(sizes) / len(sizes) if sizes else 0.0)
    (used_without, _, _, _), (used_with, _, index_keys, key_bytes) = results[False], results[True]
    return Measured(records, used_without, used_with, index_keys, key_bytes, best[False], best[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.records, args.rounds)
    scaled = result.extrapolated()
    print(f"records                          {result.records:>12,}")
    print(f"used_memory without paths        {result.used_memory_without / 2**20:>12.1f} MB")
    print(f"used_memory with paths           {result.used_memory_with / 2**20:>12.1f} MB")
    print(f"index keys                       {result.index_keys:>12,}")
    print(f"MEMORY USAGE of one index key    {result.index_key_bytes_sampled:>12.1f} bytes (sampled)")
    print(f"legacy overhead per record       {result.per_record():>12.1f} bytes (index key + fields)")
    print(f"import rate without paths        {result.import_rate_without:>12,.0f} records/s")
    print(f"import rate with paths           {result.import_rate_with:>12,.0f} records/s")
    print(f"at {TARGET:,} records: {scaled}")
    if args.json:
        args.json.write_text(json.dumps({**asdict(result), "extrapolated": scaled}, indent=2))


if __name__ == "__main__":
    main()
