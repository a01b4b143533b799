"""Bulk rates of the operator commands, as an operator runs them: `asset-gateway asset import` of an
NDJSON file of N new records, then `asset-gateway reconcile --json` over those N records against an
empty bucket on moto's S3 server (so its time is reading the store: SCAN, decode, validate; listing a
real bucket is S3's pace, not ours).

Both run in their own process against their own Redis database, emptied afterwards. The import
rate is N over the command's wall time (interpreter start included); the reconcile rate is N over
the time reconcile reports for itself (its JSON `seconds`)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench import fixtures
from bench.servers import free_port, wait_for_port

BUCKET = "assets"
REGION = "eu-west-2"


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server in this process (a thread), with an empty bucket; yields its endpoint."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request on stderr
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                              aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106  # fmt: skip
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield endpoint
    finally:
        server.stop()


def command(config: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(config)], env=env,
                          cwd=str(fixtures.REPO), capture_output=True, text=True, timeout=600)  # fmt: skip
    return done, time.monotonic() - started


def measure(directory: Path, redis_port: int, identity: fixtures.Identity, env: dict[str, str],
            records: int) -> dict[str, Any]:  # fmt: skip
    url = f"redis://127.0.0.1:{redis_port}/1"
    source = directory / "import.ndjson"
    with source.open("w") as out:
        for _, payload in fixtures.bulk_payloads(0, records, fixtures.IMPORT_PREFIX):
            out.write(payload + "\n")
    client = redis.Redis(port=redis_port, db=1)
    try:
        with moto_s3() as endpoint:
            config = fixtures.write_config(
                directory, "ingest", port=free_port(), admin_port=free_port(), redis_url=url,
                identity=identity, endpoint_url=endpoint,
            )  # fmt: skip
            done, wall = command(config, "asset", "import", str(source), env=env)
            written = re.search(r"written ([\d,]+)", done.stdout)
            own = re.search(r"records in ([\d.]+)s", done.stdout)
            if done.returncode != 0 or written is None or int(written[1].replace(",", "")) != records:
                output = f"{done.stdout[-500:]} {done.stderr[-500:]}"
                raise RuntimeError(f"asset import: exit {done.returncode}: {output}")
            result: dict[str, Any] = {"records": records, "import_seconds": wall,
                                      "import_per_second": records / wall,
                                      "import_own_seconds": float(own[1]) if own else None}  # fmt: skip
            done, wall = command(config, "reconcile", "--json", env=env)
            if done.returncode != 1:  # 1: every record's object is missing, as intended
                raise RuntimeError(f"reconcile: exit {done.returncode}: {done.stderr[-500:]}")
            answer = json.loads(done.stdout)
            if answer["records"] != records:
                raise RuntimeError(f"reconcile read {answer['records']} records, expected {records}")
            result.update(reconcile_seconds=answer["seconds"], reconcile_wall_seconds=wall,
                          reconcile_per_second=records / answer["seconds"])  # fmt: skip
            return result
    finally:
        client.flushdb()
        client.close()
        for leftover in (source, source.with_name(source.name + ".progress")):
            leftover.unlink(missing_ok=True)


def describe(result: dict[str, Any]) -> str:
    n = result["records"]
    return (
        f"import: {n:,} records in {result['import_seconds']:.1f} s wall "
        f"({result['import_per_second']:,.0f}/s; {result['import_own_seconds']} s by its own count); "
        f"reconcile: {n:,} records read in {result['reconcile_seconds']:.1f} s "
        f"({result['reconcile_per_second']:,.0f}/s by its own timing, empty moto bucket; "
        f"{result['reconcile_wall_seconds']:.1f} s wall)"
    )
