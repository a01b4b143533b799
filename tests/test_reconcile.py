"""`asset-gateway reconcile` against moto's S3 server and a real redis-server: objects without a record,
records without their object, over several pages of listing."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.models import AssetRecord
from gateway.reconcile import MissingObject, ReconcileReport, format_report
from gateway.records import record_from_dict
from gateway.state.factory import open_store
from tests.servers import S3Server

OBJECTS = 2_500  # three pages of ListObjectsV2


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[tuple[Any, str]]:
    """A bucket of its own, so other tests' objects do not show up."""
    client = s3_server.client()
    name = f"reconcile-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": s3_server.region})
    yield client, name


def upload(bucket: str, keys: list[str]) -> None:
    """Straight into the moto server's storage (this process runs it): uploading thousands of
    objects over HTTP takes moto minutes. Listing still goes through the S3 API."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(bucket, key, b"x")


def write_config(tmp_path: Path, redis_url: str, s3: S3Server, bucket: str) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[state]\nurl = "{redis_url}"\n'
        f'[s3]\nbucket = "{bucket}"\nregion = "{s3.region}"\nendpoint_url = "{s3.endpoint_url}"\n'
    )
    return config


def store_records(url: str, records: list[AssetRecord]) -> None:
    async def put_all() -> None:
        store = open_store(url)
        for start in range(0, len(records), 500):
            await store.put_many(records[start : start + 500])
        await store.close()

    asyncio.run(put_all())


def record(asset_id: str, key: str, **fields: Any) -> AssetRecord:
    """Validated (legacy path normalised) as the admin API and `asset import` do before writing."""
    return record_from_dict(
        {"id": asset_id, "version": 1, "object_key": key, "filename": f"{asset_id}.pdf", **fields}
    )


def test_reconcile_lists_what_needs_a_person(
    redis_url: str, s3_server: S3Server, bucket: tuple[Any, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _, name = bucket
    keys = [f"uploads/{n:05}" for n in range(OBJECTS)]
    upload(name, keys)

    records = [record(f"a{n:05}", key) for n, key in enumerate(keys[:-10])]  # the last 10: no record
    # Migrated files: their legacy path index keys are not records and are not counted as such.
    records[:100] = [replace(r, legacy_url_path=f"/government/uploads/f/{r.id}.pdf") for r in records[:100]]
    records += [
        # served from the bucket, but not there; a migrated file names the URL that now fails
        record("lost1", "uploads/gone-1", legacy_url_path="/government/uploads/file/1/lost 1.pdf"),
        record("lost0", "uploads/gone-0", state="unscanned"),
        record("del1", "uploads/gone-2", deleted=True),  # none of these needs its object
        record("moved1", "uploads/gone-3", redirect_url="https://example.org/new"),
        record("bad1", "uploads/gone-4", state="infected"),
    ]
    store_records(redis_url, records)

    config = write_config(tmp_path, redis_url, s3_server, name)
    assert main(["reconcile", "--config", str(config), "--json", "--limit", "3"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["objects"], report["records"]) == (OBJECTS, OBJECTS - 10 + 5)  # 3 pages listed
    assert report["objects_without_record"] == keys[-10:]  # all of them: --limit is for text
    assert report["records_missing_object"] == [
        {"id": "lost0", "object_key": "uploads/gone-0", "filename": "lost0.pdf", "version": 1,
         "legacy_url_path": None},
        {"id": "lost1", "object_key": "uploads/gone-1", "filename": "lost1.pdf", "version": 1,
         "legacy_url_path": "/government/uploads/file/1/lost%201.pdf"},
    ]  # fmt: skip
    assert report["records_without_object_not_needed"] == 3
    assert "listing bucket" in captured.err and "reading records" in captured.err  # progress

    # Under a prefix only that part of the bucket, and only records pointing into it, count; and
    # the text report says what to do.
    assert main(["reconcile", "--config", str(config), "--prefix", "uploads/gone-"]) == 1
    text = capsys.readouterr().out
    assert "objects in the bucket                       0" in text
    assert "records in the store                        5" in text
    assert "records whose object is missing             2   -> upload the objects" in text
    assert "lost0  v1  uploads/gone-0  (lost0.pdf)\n" in text
    assert "lost1  v1  uploads/gone-1  (lost1.pdf)  /government/uploads/file/1/lost%201.pdf" in text


def test_a_consistent_bucket_reports_nothing_to_do(
    redis_url: str, s3_server: S3Server, bucket: tuple[Any, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _, name = bucket
    upload(name, ["k1", "k2"])
    store_records(redis_url, [record("r1", "k1"), record("r2", "k2")])
    config = write_config(tmp_path, redis_url, s3_server, name)
    assert main(["reconcile", "--config", str(config)]) == 0
    assert "Nothing to do" in capsys.readouterr().out


def test_unreachable_store_or_bucket_is_a_clear_error(
    s3_server: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.servers import free_port

    config = write_config(tmp_path, f"redis://127.0.0.1:{free_port()}/0", s3_server, "no-such-bucket-here")
    assert main(["reconcile", "--config", str(config)]) == 2
    assert "NoSuchBucket" in capsys.readouterr().err
    config = write_config(tmp_path, f"redis://127.0.0.1:{free_port()}/0", s3_server, s3_server.bucket)
    assert main(["reconcile", "--config", str(config)]) == 2
    assert "redis scan failed" in capsys.readouterr().err


def test_format_report_limits_each_section() -> None:
    report = ReconcileReport(bucket="b", prefix="", objects=5, records=4, seconds=1.0)
    report.orphans = ["k1", "k2", "k3"]
    report.missing = [MissingObject("id1", "kx", "x.pdf", 3)]
    text = format_report(report, limit=2)
    assert "Objects with no record (3):\n  k1\n  k2\n  ... and 1 more" in text
    assert "id1  v3  kx  (x.pdf)" in text
    assert "... and" not in format_report(report, limit=0).split("Records whose")[0].split("(3):")[1]
