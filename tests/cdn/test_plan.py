"""The purge decision table: one row per kind of write, old record → new record → purge."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.cdn.plan import PurgeKind, manual_purge, plan_purge, purge_kind, purge_paths
from gateway.models import AccessList, AssetRecord

PUBLIC = AssetRecord(
    id="a1",
    version=3,
    object_key="objects/a1",
    filename="report.pdf",
    filename_history=("draft.pdf",),
    content_type="application/pdf",
    etag='"e1"',
)
LIMITED = AccessList(organisations=("org-1",))

# (case, old fields changed from PUBLIC or None for no record, new fields changed from PUBLIC, expected)
TABLE: list[tuple[str, dict[str, Any] | None, dict[str, Any], PurgeKind | None]] = [
    ("created: nothing could be cached", None, {}, None),
    ("version bump only", {}, {"version": 4}, None),
    ("preview ids only matter on the draft host", {}, {"auth_bypass_ids": ("b1",)}, None),
    ("made draft", {}, {"draft": True}, PurgeKind.HARD),
    ("deleted", {}, {"deleted": True}, PurgeKind.HARD),
    ("access-limited", {}, {"access_limited": LIMITED}, PurgeKind.HARD),
    ("limits changed to other people", {"access_limited": LIMITED},
     {"access_limited": AccessList(users=("u1",))}, PurgeKind.HARD),
    ("redirected", {}, {"redirect_url": "https://example.org/new"}, PurgeKind.HARD),
    ("redirect moved", {"redirect_url": "https://example.org/a"},
     {"redirect_url": "https://example.org/b"}, PurgeKind.HARD),
    ("replaced", {}, {"replacement_id": "b2"}, PurgeKind.HARD),
    ("replacement changed", {"replacement_id": "b2"}, {"replacement_id": "c3"}, PurgeKind.HARD),
    ("found infected", {}, {"state": "infected"}, PurgeKind.HARD),
    ("filename dropped from history", {}, {"filename_history": ()}, PurgeKind.HARD),
    ("renamed, old name kept in history", {},
     {"filename": "final.pdf", "filename_history": ("draft.pdf", "report.pdf")}, PurgeKind.SOFT),
    ("renamed, old name forgotten", {}, {"filename": "final.pdf"}, PurgeKind.HARD),
    ("new bytes", {}, {"object_key": "objects/a1-v2", "etag": '"e2"'}, PurgeKind.SOFT),
    ("content type fixed", {}, {"content_type": "application/x-pdf"}, PurgeKind.SOFT),
    ("parent page changed", {}, {"parent_document_url": "https://example.org/p"}, PurgeKind.SOFT),
    ("published (was draft)", {"draft": True}, {}, PurgeKind.SOFT),
    ("undeleted", {"deleted": True}, {}, PurgeKind.SOFT),
    ("limits lifted", {"access_limited": LIMITED}, {}, PurgeKind.SOFT),
    ("redirect removed", {"redirect_url": "https://example.org/a"}, {}, PurgeKind.SOFT),
    ("scan finished", {"state": "unscanned"}, {}, PurgeKind.SOFT),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old_fields", "new_fields", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_purge_kind_table(
    old_fields: dict[str, Any] | None, new_fields: dict[str, Any], expected: PurgeKind | None
) -> None:
    old = None if old_fields is None else replace(PUBLIC, **old_fields)
    new = replace(PUBLIC, **{"version": PUBLIC.version + 1, **new_fields})
    assert purge_kind(old, new) is expected
    plan = plan_purge(old, new)
    assert (plan is None) == (expected is None)
    if plan is not None:
        assert plan.kind is expected
        assert plan.keys == ("asset-a1",)


def test_paths_cover_every_name_before_and_after() -> None:
    new = replace(PUBLIC, version=4, filename="final report.pdf", filename_history=("report.pdf",))
    assert purge_paths(PUBLIC, new) == (
        "/media/a1/draft.pdf",
        "/media/a1/report.pdf",
        "/media/a1/final%20report.pdf",
    )


def test_manual_purge_is_hard_and_names_paths_only_when_the_record_is_known() -> None:
    assert manual_purge("a1").kind is PurgeKind.HARD
    assert manual_purge("a1").paths == ()
    assert manual_purge("a1", PUBLIC).paths == ("/media/a1/draft.pdf", "/media/a1/report.pdf")
