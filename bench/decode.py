"""Decode cost of one stored record, in process: what a cache miss pays after the Redis read.
The full check (`record_from_dict`, as every write gets) against the read path's
`record_from_stored`, and what a record held packed in the record cache costs to unpack when it is
used again (gateway.state.packed), measured alternately in one run so a busy machine slows all alike.

    python -m bench.decode            # prints one JSON line: µs per record for each, and the ratio
"""

from __future__ import annotations

import argparse
import json
import timeit

from bench.fixtures import USER, bulk_id, record
from gateway.records import STORED_MAX_VERSION, record_from_dict, record_from_stored, record_to_dict
from gateway.state.packed import pack, unpack


def stored_json(asset_id: str, users: tuple[str, ...] = ()) -> bytes:
    """As RedisAssetStore stores it."""
    return json.dumps(record_to_dict(record(asset_id, users=users)), separators=(",", ":")).encode()


def measure(number: int, repeat: int) -> dict[str, float]:
    payloads = [stored_json(bulk_id(0)), stored_json("lim-1", users=(USER,))]

    def full() -> None:
        for raw in payloads:
            record_from_dict(json.loads(raw), max_version=STORED_MAX_VERSION)

    def stored() -> None:
        for raw in payloads:
            record_from_stored(raw)

    held = [(pack(found, found.id), found.id) for found in map(record_from_stored, payloads)]

    def unpacked() -> None:
        for packed, key in held:
            unpack(packed, key)

    runs = (("full_us", full), ("stored_us", stored), ("unpack_us", unpacked))
    best = dict.fromkeys((name for name, _ in runs), float("inf"))
    for _ in range(repeat):  # alternated, the best of each
        for name, run in runs:
            best[name] = min(best[name], timeit.timeit(run, number=number) / number / len(payloads) * 1e6)
    return {**best, "ratio": best["full_us"] / best["stored_us"], "packed_bytes": len(held[0][0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(measure(args.number, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
