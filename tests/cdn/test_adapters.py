"""The adapters against something that answers like the CDN: Fastly's purge API played by a local
recording server, CloudFront by moto's server (the real boto3 client, CreateInvalidation)."""

from __future__ import annotations

from typing import Any

import boto3

from gateway.cdn.adapters import CloudFrontPurger, FastlyPurger, HttpPurger, fit_paths
from gateway.cdn.plan import Purge, PurgeKind
from tests.cdn.conftest import RecordingCdn
from tests.servers import S3Server


def purge(asset_id: str, kind: PurgeKind = PurgeKind.HARD, paths: tuple[str, ...] = ()) -> Purge:
    return Purge(asset_id, kind, (f"asset-{asset_id}",), paths or (f"/media/{asset_id}/f.pdf",))


async def test_fastly_purges_by_surrogate_key_soft_only_for_content_updates(cdn: RecordingCdn) -> None:
    fastly = FastlyPurger("SVC123", "fastly-token", api_url=cdn.url)
    try:
        result = await fastly.purge([purge("a1"), purge("a2", PurgeKind.SOFT), purge("a3")])
    finally:
        await fastly.close()
    assert result == [True, True, True]
    calls = [
        (c.method, c.path, c.headers["Surrogate-Key"], c.headers.get("Fastly-Soft-Purge")) for c in cdn.calls
    ]
    assert calls == [
        ("POST", "/service/SVC123/purge", "asset-a1 asset-a3", None),
        ("POST", "/service/SVC123/purge", "asset-a2", "1"),
    ]
    assert {c.headers["Fastly-Key"] for c in cdn.calls} == {"fastly-token"}


async def test_fastly_batches_at_most_256_keys_a_call(cdn: RecordingCdn) -> None:
    fastly = FastlyPurger("SVC123", "t", api_url=cdn.url)
    try:
        assert all(await fastly.purge([purge(f"k{i}") for i in range(300)]))
    finally:
        await fastly.close()
    assert [len(c.headers["Surrogate-Key"].split()) for c in cdn.calls] == [256, 44]


async def test_a_refusing_or_unreachable_cdn_confirms_nothing(cdn: RecordingCdn) -> None:
    cdn.down = True
    fastly = FastlyPurger("SVC123", "t", api_url=cdn.url)
    http = HttpPurger(cdn.url, "Cache-Tag")
    unreachable = HttpPurger("http://127.0.0.1:9/", "Cache-Tag")  # discard port: nothing listens
    try:
        assert await fastly.purge([purge("a1")]) == [False]
        assert await http.purge([purge("a1"), purge("a2")]) == [False, False]
        assert await unreachable.purge([purge("a1")]) == [False]
    finally:
        for adapter in (fastly, http, unreachable):
            await adapter.close()
    assert [c.headers.get("Cache-Tag") for c in cdn.calls if c.method == "PURGE"] == ["asset-a1", "asset-a2"]


def cloudfront(s3_server: S3Server) -> Any:
    return boto3.client(
        "cloudfront",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def distribution(client: Any) -> str:
    origin = {
        "Id": "gateway",
        "DomainName": "gateway.example.org",
        "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"},
    }
    config = {
        "CallerReference": "asset-gateway-test",
        "Comment": "",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [origin]},
        "DefaultCacheBehavior": {
            "TargetOriginId": "gateway", "ViewerProtocolPolicy": "https-only", "MinTTL": 0,
            "ForwardedValues": {"QueryString": True, "Cookies": {"Forward": "none"}},
            "TrustedSigners": {"Enabled": False, "Quantity": 0},
        },
    }  # fmt: skip
    return str(client.create_distribution(DistributionConfig=config)["Distribution"]["Id"])


async def test_cloudfront_sends_every_path_of_a_batch_in_one_invalidation(s3_server: S3Server) -> None:
    client = cloudfront(s3_server)
    distribution_id = distribution(client)
    adapter = CloudFrontPurger(distribution_id, client)
    batch = [purge("a1", paths=("/media/a1/new.pdf", "/media/a1/old.pdf")), purge("a2"), purge("a1")]
    assert await adapter.purge(batch) == [True, True, True]
    listed = client.list_invalidations(DistributionId=distribution_id)["InvalidationList"]["Items"]
    assert len(listed) == 1
    sent = client.get_invalidation(DistributionId=distribution_id, Id=listed[0]["Id"])["Invalidation"]
    paths = sent["InvalidationBatch"]["Paths"]["Items"]
    assert sorted(paths) == ["/media/a1/f.pdf", "/media/a1/new.pdf", "/media/a1/old.pdf", "/media/a2/f.pdf"]


async def test_cloudfront_refusal_confirms_nothing(s3_server: S3Server) -> None:
    adapter = CloudFrontPurger("NO-SUCH-DISTRIBUTION", cloudfront(s3_server))
    assert await adapter.purge([purge("a1")]) == [False]


def test_paths_beyond_the_room_in_progress_wait_in_queue_order() -> None:
    batch = [purge("a1", paths=("/1", "/2")), purge("a2", paths=("/3", "/4")), purge("a3", paths=("/5",))]
    assert fit_paths(batch, 3) == ({0}, ["/1", "/2"])  # a3 would fit, but must not overtake a2
    assert fit_paths(batch, 5) == ({0, 1, 2}, ["/1", "/2", "/3", "/4", "/5"])
    assert fit_paths([Purge("a9", PurgeKind.HARD, ("asset-a9",), ())], 10) == ({0}, ["/media/a9/*"])
    assert fit_paths(batch, 0) == (set(), [])
