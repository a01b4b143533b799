"""Write-to-edge figures for CDN purges (DESIGN 2.9), against a real Varnish configured from
cdn/varnish.vcl.template in front of one gateway on real Redis and moto's S3:

    python -m bench.purge [--writes 200]

For each of N public files: cache its redirect at Varnish (a second request is a hit), unpublish it
through the admin API, then poll Varnish until it stops serving the cached answer. Prints p50/p99 of
(a) write → purge confirmed: from the purge entry's time (stamped by Redis inside the versioned
write) to the CDN's 200, as the gateway's purge worker measures it, and (b) the admin API's answer →
the first request through Varnish that no longer gets the cached answer (polled every 2 ms).
A measurement, not a test: it asserts nothing about time. Needs redis-server and varnishd."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

from aiohttp import ClientSession, web

from gateway.app import build_gateway, create_admin_app, create_public_app
from gateway.http.runner import GatewayRunner
from gateway.metrics import Metrics
from gateway.settings import (
    AdminSettings,
    CdnSettings,
    PoliciesSettings,
    S3Settings,
    Secret,
    Settings,
    StateSettings,
)
from tests.servers import free_port, run_redis, run_s3
from tests.varnish import run_varnish

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105 - a local throwaway admin token
LIVE = "assets.example.org"


class RecordingMetrics(Metrics):
    """Keeps every write-to-confirmation time, not only the histogram's buckets."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.samples: list[float] = []
        self.expected = expected
        self.all_confirmed = asyncio.Event()

    def purges_confirmed(self, adapter: str, seconds_since_write: Iterable[float]) -> None:
        seconds = list(seconds_since_write)
        self.samples.extend(seconds)
        if len(self.samples) >= self.expected:
            self.all_confirmed.set()
        super().purges_confirmed(adapter, seconds)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(writes: int) -> dict[str, object]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # moto takes any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with run_redis() as redis_server, run_s3() as s3:
        port, admin_port = free_port(), free_port()
        with run_varnish(backend_port=port) as varnish:
            settings = Settings(
                admin=AdminSettings(port=admin_port, token=Secret(TOKEN)),
                state=StateSettings(url=Secret(redis_server.url)),
                s3=S3Settings(bucket=s3.bucket, region=s3.region, endpoint_url=s3.endpoint_url),
                policies=PoliciesSettings(dir=str(ROOT / "policies")),
                cdn=CdnSettings(purge="http", url=f"{varnish.url}/"),
            )
            gateway = build_gateway(settings)
            metrics = RecordingMetrics(writes)
            assert gateway.purges is not None
            gateway.purges.metrics = metrics
            runners = []
            for app, listen in ((create_public_app(gateway), port), (create_admin_app(gateway), admin_port)):
                runner = GatewayRunner(app)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", listen).start()
                runners.append(runner)
            edge: list[float] = []
            auth = {"Authorization": f"Bearer {TOKEN}"}
            try:
                async with ClientSession() as session:

                    async def location(asset_id: str) -> tuple[str, str]:
                        async with session.get(
                            f"{varnish.url}/media/{asset_id}/a.pdf",
                            headers={"Host": LIVE},
                            allow_redirects=False,
                        ) as response:
                            return response.headers.get("Location", ""), response.headers.get("X-Cache", "")

                    for n in range(writes):
                        asset_id = f"bench{n}"
                        record = {
                            "id": asset_id,
                            "version": 1,
                            "object_key": f"o/{asset_id}",
                            "filename": "a.pdf",
                        }
                        url = f"http://127.0.0.1:{admin_port}/assets/{asset_id}"
                        async with session.put(url, data=json.dumps(record), headers=auth) as response:
                            assert response.status == 201, response.status
                        cached, _ = await location(asset_id)
                        assert await location(asset_id) == (cached, "hit")
                        async with session.patch(
                            url, data='{"version": 2, "draft": true}', headers=auth
                        ) as response:
                            assert response.status == 200, response.status
                        answered = time.perf_counter()
                        deadline = answered + 10
                        while (await location(asset_id))[0] == cached:
                            if time.perf_counter() > deadline:
                                raise SystemExit(f"{asset_id}: still cached at the edge after 10 s")
                            await asyncio.sleep(0.002)
                        edge.append(time.perf_counter() - answered)
                    async with asyncio.timeout(10):
                        await metrics.all_confirmed.wait()
            finally:
                for runner in reversed(runners):
                    await runner.cleanup()
    confirmed = metrics.samples
    return {
        "writes": writes,
        "write_to_confirmed_ms": {"p50": round(percentile(confirmed, 0.5) * 1000, 2),
                                  "p99": round(percentile(confirmed, 0.99) * 1000, 2),
                                  "max": round(max(confirmed) * 1000, 2), "n": len(confirmed)},
        "admin_answer_to_edge_miss_ms": {"p50": round(percentile(edge, 0.5) * 1000, 2),
                                         "p99": round(percentile(edge, 0.99) * 1000, 2),
                                         "max": round(max(edge) * 1000, 2),
                                         "mean": round(statistics.fmean(edge) * 1000, 2)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.writes)), indent=2))


if __name__ == "__main__":
    main()
