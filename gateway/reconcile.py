"""`asset-gateway reconcile`: compare the bucket with the state store and list what needs a person:
objects nobody has a record for (an upload whose record write was lost, or leftovers), and records
that would be served from the bucket but whose object is not there (every request for them fails).

The bucket is listed page by page (ListObjectsV2, 1,000 keys a page) and the store read in batches
(SCAN on Redis, every primary on Cluster); only the keys are held in memory, about 100 bytes each,
so a million objects need some 100 MB."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.models import AssetRecord
from gateway.progress import Progress
from gateway.settings import S3Settings
from gateway.state.base import BulkAssetStore

PAGE_SIZE = 1000
DEFAULT_LIMIT = 100  # entries shown per section in the text report


@dataclass(frozen=True, slots=True)
class MissingObject:
    id: str
    object_key: str
    filename: str
    version: int
    legacy_url_path: str | None = None  # the URL in the wild that fails, for migrated files


@dataclass
class ReconcileReport:
    bucket: str
    prefix: str
    objects: int = 0
    records: int = 0  # with an object key under the prefix
    orphans: list[str] = field(default_factory=list)  # keys with no record, sorted
    missing: list[MissingObject] = field(default_factory=list)  # sorted by id
    not_needed: int = 0  # records without an object that need none: deleted, redirected, infected
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.orphans and not self.missing

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "objects": self.objects,
            "records": self.records,
            "objects_without_record": self.orphans,
            "records_missing_object": [_fields(m) for m in self.missing],
            "records_without_object_not_needed": self.not_needed,
            "seconds": round(self.seconds, 3),
        }


def _fields(missing: MissingObject) -> dict[str, Any]:
    return {"id": missing.id, "object_key": missing.object_key, "filename": missing.filename,
            "version": missing.version, "legacy_url_path": missing.legacy_url_path}  # fmt: skip


def needs_object(record: AssetRecord) -> bool:
    """Whether a request could be answered from the bucket: not for deleted or redirected records,
    nor for files the virus scanner condemned (their object is often removed on purpose)."""
    return not record.deleted and record.redirect_url is None and record.state != "infected"


def list_bucket(client: Any, bucket: str, prefix: str = "") -> Iterator[list[str]]:
    """Every key in the bucket under `prefix`, a page at a time (boto3 follows the continuation
    tokens)."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE_SIZE}):
        yield [item["Key"] for item in page.get("Contents", ())]


def s3_client(settings: S3Settings) -> Any:
    import boto3
    from botocore.config import Config

    # Path-style for S3-compatible endpoints, as the presigner does; retries for long listings.
    config = Config(
        retries={"max_attempts": 8, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.endpoint_url else {},
    )
    return boto3.client(
        "s3", region_name=settings.region, endpoint_url=settings.endpoint_url or None, config=config
    )


async def reconcile(
    store: BulkAssetStore,
    pages: Callable[[], Iterator[list[str]]],
    *,
    bucket: str,
    prefix: str = "",
    progress: Callable[[str], Progress] | None = None,
) -> ReconcileReport:
    """`pages` yields the bucket's keys a page at a time (run in a thread: boto3 blocks)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = ReconcileReport(bucket=bucket, prefix=prefix)

    keys: set[str] = set()
    listing = progress("listing bucket") if progress else None
    iterator = pages()
    while (page := await asyncio.to_thread(next, iterator, None)) is not None:
        keys.update(page)
        report.objects += len(page)
        if listing:
            listing.update(report.objects, detail=f"bucket {bucket}")
    if listing:
        listing.finish(report.objects, detail=f"bucket {bucket}")
    report.objects = len(keys)

    referenced: set[str] = set()
    missing: dict[str, MissingObject] = {}  # by id: SCAN may return a record twice
    seen: set[str] = set()
    reading = progress("reading records") if progress else None
    async for batch in store.scan():
        for record in batch:
            if record.id in seen or not record.object_key.startswith(prefix):
                continue
            seen.add(record.id)
            referenced.add(record.object_key)
            if record.object_key in keys:
                continue
            if needs_object(record):
                missing[record.id] = MissingObject(
                    record.id, record.object_key, record.filename, record.version, record.legacy_url_path
                )
            else:
                report.not_needed += 1
        if reading:
            reading.update(len(seen), detail="state store")
    if reading:
        reading.finish(len(seen), detail="state store")
    report.records = len(seen)
    report.orphans = sorted(keys - referenced)
    report.missing = sorted(missing.values(), key=lambda m: m.id)
    report.seconds = loop.time() - started
    return report


def format_report(report: ReconcileReport, limit: int = DEFAULT_LIMIT) -> str:
    """The text report: counts first, then each list (at most `limit` entries each; 0 = all)."""
    where = f"s3://{report.bucket}/{report.prefix}"
    lines = [
        f"Reconcile of {where} against the state store ({report.seconds:.1f}s)",
        "",
        f"  objects in the bucket            {report.objects:>12,}",
        f"  records in the store             {report.records:>12,}",
        f"  objects with no record           {len(report.orphans):>12,}"
        + ("   -> write their records, or delete the objects" if report.orphans else ""),
        f"  records whose object is missing  {len(report.missing):>12,}"
        + ("   -> upload the objects, or delete the records" if report.missing else ""),
        f"  records needing no object        {report.not_needed:>12,}   (deleted, redirected or infected)",
    ]
    if report.clean:
        lines += ["", "Nothing to do: every object has a record and every record its object."]
        return "\n".join(lines)

    def section(title: str, rows: list[str], total: int) -> None:
        lines.extend(["", f"{title} ({total:,}):"])
        shown = rows if limit == 0 else rows[:limit]
        lines.extend(f"  {row}" for row in shown)
        if len(shown) < total:
            lines.append(f"  ... and {total - len(shown):,} more (--limit 0 lists all, --json for a file)")

    if report.orphans:
        section("Objects with no record", report.orphans, len(report.orphans))
    if report.missing:
        width = max(len(m.id) for m in report.missing)
        rows = [
            f"{m.id:<{width}}  v{m.version}  {m.object_key}  ({m.filename})"
            + (f"  {m.legacy_url_path}" if m.legacy_url_path else "")
            for m in report.missing
        ]
        title = "Records whose object is missing (id, version, object key, filename, legacy path)"
        section(title, rows, len(rows))
    return "\n".join(lines)


def report_json(report: ReconcileReport) -> str:
    return json.dumps(report.as_json(), indent=2)
