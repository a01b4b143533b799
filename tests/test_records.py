"""Stored records read back (gateway.records.record_from_stored): the very record the write path
validated, RecordInvalid naming the field for a value of the wrong shape or type, the full checks
for anything not stored as the write path stores it, and the shared values that keep a cached
record small."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.models import NO_LIMITS, AccessList, AssetRecord
from gateway.records import (
    STORED_MAX_VERSION,
    RecordInvalid,
    record_from_dict,
    record_from_stored,
    record_to_dict,
)

PLAIN = AssetRecord(id="a1", version=1, object_key="k/a1", filename="f.pdf")
FULL = AssetRecord(
    id="Full_1-x", version=STORED_MAX_VERSION, object_key="objects/ü/1", filename='say "hi" \\ café.pdf',
    filename_history=("old.pdf", "older.pdf"), content_type="application/pdf", state="clean",
    draft=True, deleted=True, redirect_url="https://www.example.org/a?b=c",
    replacement_id="r2", access_limited=AccessList(("u1",), ("org",), ("g1", "g2")),
    auth_bypass_ids=("b1",), parent_document_url="http://example.org/parent",
    etag='"a1-1f00"', last_modified="2024-01-19T11:15:58Z", size=0,
    legacy_url_path="/government/uploads/system/f.pdf", legacy_etag='"old"',
    legacy_last_modified="2014-01-01T00:00:00Z",
)  # fmt: skip


def stored(record: AssetRecord | dict[str, Any]) -> bytes:
    """As the write path stores a record (gateway.state.redis)."""
    data = record_to_dict(record) if isinstance(record, AssetRecord) else record
    return json.dumps(data, separators=(",", ":")).encode()


@pytest.mark.parametrize("record", [PLAIN, FULL], ids=["plain", "full"])
def test_a_stored_record_reads_back_as_written(record: AssetRecord) -> None:
    assert record_from_stored(stored(record)) == record
    assert record_from_stored(stored(record).decode()) == record


SAFE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n/"), min_size=1, max_size=12
)
FIELDS = st.fixed_dictionaries(
    {"id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
     "version": st.integers(1, STORED_MAX_VERSION), "object_key": SAFE_TEXT, "filename": SAFE_TEXT,
     "content_type": SAFE_TEXT, "state": st.sampled_from(["unscanned", "clean", "infected", "uploaded"]),
     "draft": st.booleans(), "deleted": st.booleans(), "etag": st.none() | SAFE_TEXT,
     "size": st.none() | st.integers(0, 2**40), "filename_history": st.lists(SAFE_TEXT, max_size=3),
     "access_limited": st.fixed_dictionaries(
         {"users": st.lists(SAFE_TEXT, max_size=2), "groups": st.lists(SAFE_TEXT, max_size=2)}),
     "legacy_url_path": st.none() | st.just("/government/uploads/a b.pdf")},
)  # fmt: skip


@given(FIELDS)
def test_whatever_the_write_path_accepts_reads_back_the_same(fields: dict[str, Any]) -> None:
    try:
        record = record_from_dict(fields, max_version=STORED_MAX_VERSION)
    except RecordInvalid:
        return  # the write path refuses it: never stored
    assert record_from_stored(stored(record)) == record
    assert record_from_dict(json.loads(stored(record)), max_version=STORED_MAX_VERSION) == record


WRONG = [
    ("id", 5), ("id", ""), ("id", "has space"), ("version", "1"), ("version", True), ("version", 1.5),
    ("version", 0), ("version", STORED_MAX_VERSION + 1), ("object_key", None), ("object_key", ""),
    ("filename", ["f.pdf"]), ("filename_history", "old.pdf"), ("filename_history", [1]),
    ("content_type", 7), ("state", ["clean"]), ("state", "gone"), ("draft", "false"), ("deleted", 0),
    ("redirect_url", 1), ("replacement_id", 5), ("replacement_id", "not an id"),
    ("access_limited", ["u1"]), ("access_limited", {"users": "u1", "organisations": [], "groups": []}),
    ("access_limited", {"users": [], "organisations": [], "groups": [], "roles": []}),
    ("auth_bypass_ids", [None]), ("parent_document_url", {}), ("etag", 1), ("last_modified", False),
    ("size", "793600"), ("size", -1), ("size", True), ("legacy_url_path", 3), ("legacy_etag", []),
    ("legacy_last_modified", 1.5),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), WRONG, ids=[f"{f}={v!r}" for f, v in WRONG])
def test_a_field_of_the_wrong_type_or_form_is_named(field: str, value: object) -> None:
    data = {**record_to_dict(FULL), field: value}
    with pytest.raises(RecordInvalid) as caught:
        record_from_stored(stored(data))
    assert {error.field.split(".")[0] for error in caught.value.errors} == {field}


@pytest.mark.parametrize("escape", ["\\r", "\\n", "\\u000d", "\\u000A", "\\u0000"])
def test_control_characters_are_refused_however_escaped(escape: str) -> None:
    raw = stored(PLAIN).replace(b'"f.pdf"', b'"f' + escape.encode() + b'.pdf"')
    with pytest.raises(RecordInvalid) as caught:
        record_from_stored(raw)
    assert [error.field for error in caught.value.errors] == ["filename"]


def test_a_record_stored_before_a_field_existed_still_reads() -> None:
    data = record_to_dict(PLAIN)
    for name in ("legacy_url_path", "legacy_etag", "legacy_last_modified", "auth_bypass_ids"):
        del data[name]
    assert record_from_stored(stored(data)) == PLAIN


def test_other_encodings_and_unknown_fields_get_the_full_check() -> None:
    text = stored(FULL).decode()
    assert record_from_stored(b"\xef\xbb\xbf" + text.encode()) == FULL  # a UTF-8 BOM
    assert record_from_stored(text.encode("utf-16")) == FULL
    with pytest.raises(RecordInvalid) as caught:
        record_from_stored(stored({**record_to_dict(PLAIN), "colour": "red"}))
    assert [error.field for error in caught.value.errors] == ["colour"]
    for not_a_record in (b"[]", b"null", b"{not json"):
        with pytest.raises(ValueError):
            record_from_stored(not_a_record)


def test_records_share_their_state_content_type_and_empty_access_list() -> None:
    one = record_from_stored(stored(AssetRecord(id="a", version=1, object_key="k", filename="f",
                                                content_type="application/pdf")))  # fmt: skip
    two = record_from_stored(stored(AssetRecord(id="b", version=1, object_key="k", filename="f",
                                                content_type="application/pdf")))  # fmt: skip
    assert one.state is two.state
    assert one.content_type is two.content_type
    assert one.access_limited is NO_LIMITS and two.access_limited is NO_LIMITS
    checked = record_from_dict({"id": "c", "version": 1, "object_key": "k", "filename": "f",
                                "content_type": "application/pdf", "state": "uploaded"})  # fmt: skip
    assert (checked.state, checked.content_type) == (one.state, one.content_type)
    assert checked.state is one.state and checked.content_type is one.content_type
    assert checked.access_limited is NO_LIMITS
    assert record_from_stored(stored(FULL)).access_limited == FULL.access_limited
