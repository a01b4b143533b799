"""A cached record's packed form (gateway.state.packed): every field comes back as it went in,
whatever its value, and the id is shared with the key it is cached under."""

from __future__ import annotations

import dataclasses
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.models import NO_LIMITS, AccessList, AssetRecord
from gateway.state.packed import pack, unpack

PLAIN = AssetRecord(id="a1", version=1, object_key="k/a1", filename="f.pdf")
# Every field away from its default, each to a value no other field holds.
FULL = AssetRecord(
    id="Full_1-x", version=2**63 - 1, object_key="objects/ü/1", filename='say "hi" \\ café.pdf',
    filename_history=("old.pdf", "older.pdf"), content_type="application/pdf", state="clean",
    draft=True, deleted=True, redirect_url="https://www.example.org/a?b=c",
    replacement_id="r2", access_limited=AccessList(("u1",), ("org",), ("g1", "g2")),
    auth_bypass_ids=("b1",), parent_document_url="http://example.org/parent",
    etag='"a1-1f00"', last_modified="2024-01-19T11:15:58Z", size=2**40,
    legacy_url_path="/government/uploads/system/f.pdf", legacy_etag='"old"',
    legacy_last_modified="2014-01-01T00:00:00Z",
)  # fmt: skip
FIELDS = [field.name for field in dataclasses.fields(AssetRecord)]


@pytest.mark.parametrize("record", [PLAIN, FULL], ids=["plain", "full"])
@pytest.mark.parametrize("key", ["id", "legacy path", "other"])
def test_a_record_comes_back_equal_under_any_key(record: AssetRecord, key: str) -> None:
    under = {"id": record.id, "legacy path": "/government/uploads/x.pdf", "other": "z9"}[key]
    back = unpack(pack(record, under), under)
    assert back == record
    assert type(back.filename_history) is tuple and type(back.access_limited) is AccessList


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_packed(name: str) -> None:
    """A field `pack` left out would come back as its default, which FULL's value never is."""
    changed = dataclasses.replace(PLAIN, **{name: getattr(FULL, name)})
    assert changed != PLAIN
    assert unpack(pack(changed, "key"), "key") == changed


def test_the_id_is_the_key_it_is_cached_under() -> None:
    key = "".join(["a", "1"])  # a string object of its own, as a request's copy is
    by_id, by_path = pack(PLAIN, key), pack(PLAIN, "/government/uploads/f.pdf")
    assert len(by_id) < len(by_path)  # the id is not held twice
    assert unpack(by_id, key).id is key


def test_shared_values_stay_shared() -> None:
    record = dataclasses.replace(PLAIN, content_type=sys.intern("application/pdf"))
    back = unpack(pack(record, "a1"), "a1")
    assert back.access_limited is NO_LIMITS
    assert back.state is sys.intern("uploaded") and back.content_type is record.content_type


TEXT = st.text(max_size=20)  # lone surrogates included: the JSON a record is read from allows them
TEXTS = st.lists(TEXT, max_size=3).map(tuple)
RECORDS = st.builds(
    AssetRecord,
    id=st.text(min_size=1, max_size=10), version=st.integers(1, 2**63 - 1), object_key=TEXT,
    filename=TEXT, filename_history=TEXTS, content_type=TEXT, state=TEXT, draft=st.booleans(),
    deleted=st.booleans(), redirect_url=st.none() | TEXT, replacement_id=st.none() | TEXT,
    access_limited=st.just(NO_LIMITS) | st.builds(AccessList, TEXTS, TEXTS, TEXTS),
    auth_bypass_ids=TEXTS, parent_document_url=st.none() | TEXT, etag=st.none() | TEXT,
    last_modified=st.none() | TEXT, size=st.none() | st.integers(0, 2**63), legacy_url_path=st.none() | TEXT,
    legacy_etag=st.none() | TEXT, legacy_last_modified=st.none() | TEXT,
)  # fmt: skip


@given(RECORDS, st.text(min_size=1, max_size=10))
def test_any_record_round_trips(record: AssetRecord, key: str) -> None:
    assert unpack(pack(record, key), key) == record
    assert unpack(pack(record, record.id), record.id) == record
