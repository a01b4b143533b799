"""Legacy paths (gateway.legacy): one canonical spelling per path, with Hypothesis properties, and
the record fields' validation."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.legacy import (
    LEGACY_PREFIX,
    NotALegacyPath,
    as_legacy,
    extension,
    file_name,
    normalise_legacy_path,
    placeholder_for,
)
from gateway.models import AssetRecord
from gateway.records import RecordInvalid, record_from_dict, record_to_dict

LITERAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@")


@pytest.mark.parametrize(
    ("given_path", "normalised"),
    [
        (
            "/government/uploads/system/uploads/file/1/budget.pdf",
            "/government/uploads/system/uploads/file/1/budget.pdf",
        ),
        ("/government/uploads/a/spring%20budget.pdf", "/government/uploads/a/spring%20budget.pdf"),
        ("/government/uploads/a/spring budget.pdf", "/government/uploads/a/spring%20budget.pdf"),
        ("/government/uploads/a/%7euser%2c%41.pdf", "/government/uploads/a/~user,A.pdf"),
        ("/government/uploads/a/caf%c3%a9.pdf", "/government/uploads/a/caf%C3%A9.pdf"),
        ("/government/uploads/a/café.pdf", "/government/uploads/a/caf%C3%A9.pdf"),
        ("/government/uploads/a/résumé 2.odt", "/government/uploads/a/r%C3%A9sum%C3%A9%202.odt"),
        ("/government/uploads/a/x%2Fy.pdf", "/government/uploads/a/x%2Fy.pdf"),  # stays one segment
        ("/government/uploads/a/{b}.pdf", "/government/uploads/a/%7Bb%7D.pdf"),
        ("/government/uploads/a/%F0%9F%93%84.pdf", "/government/uploads/a/%F0%9F%93%84.pdf"),
    ],
)
def test_equivalent_spellings_have_one_normal_form(given_path: str, normalised: str) -> None:
    assert normalise_legacy_path(given_path) == normalised


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("/media/a1/x.pdf", "must start with"),
        ("/government/uploads", "must start with"),
        ("/government/uploads/a/%zz.pdf", "two hex digits"),
        ("/government/uploads/a/%4.pdf", "two hex digits"),
        ("/government/uploads/a//x.pdf", "empty segment"),
        ("/government/uploads/", "empty segment"),
        ("/government/uploads/a/../x.pdf", "'..' segment"),
        ("/government/uploads/a/%2e%2E/x.pdf", "'..' segment"),
        ("/government/uploads/a/x%00.pdf", "control character"),
        ("/government/uploads/a/\ud800.pdf", "not valid text"),
        ("/government/uploads/" + "a" * 2100, "at most"),
    ],
)
def test_what_is_not_a_legacy_path_is_refused_with_a_reason(bad: str, reason: str) -> None:
    with pytest.raises(NotALegacyPath, match=reason):
        normalise_legacy_path(bad)


segment_bytes = st.binary(min_size=1, max_size=20).filter(
    lambda b: b not in (b".", b"..") and not any(x < 0x20 or x == 0x7F for x in b)
)


@st.composite
def spellings(draw: st.DrawFn) -> tuple[list[bytes], str, str]:
    """Segments as bytes, and two spellings of them: each octet literal where a URL may hold it
    (the rest as UTF-8 text where it decodes) or percent-encoded in either case of hex."""
    segments = draw(st.lists(segment_bytes, min_size=1, max_size=4))

    def spell(segment: bytes) -> str:
        out = []
        for byte in segment:
            literal = byte in LITERAL and draw(st.booleans())
            hexed = f"%{byte:02X}" if draw(st.booleans()) else f"%{byte:02x}"
            out.append(chr(byte) if literal else hexed)
        return "".join(out)

    first = LEGACY_PREFIX + "/".join(spell(s) for s in segments)
    second = LEGACY_PREFIX + "/".join(spell(s) for s in segments)
    return segments, first, second


@given(spellings())
def test_normalising_twice_is_identity_and_equivalent_spellings_agree(
    case: tuple[list[bytes], str, str],
) -> None:
    segments, first, second = case
    try:
        normalised = normalise_legacy_path(first)
    except NotALegacyPath as exc:
        assert "at most" in str(exc)
        return
    assert normalise_legacy_path(normalised) == normalised
    assert normalise_legacy_path(second) == normalised
    assert normalised.isascii()
    assert len(normalised[len(LEGACY_PREFIX) :].split("/")) == len(segments)


@given(st.text(min_size=1, max_size=30).filter(lambda t: "/" not in t and t not in (".", "..")))
def test_non_ascii_text_is_utf8_percent_encoded(name: str) -> None:
    try:
        normalised = normalise_legacy_path(f"{LEGACY_PREFIX}file/{name}")
    except NotALegacyPath:
        assert any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in name) or "%" in name
        return
    assert normalised.isascii()
    if "%" not in name:
        assert file_name(normalised) == name


@pytest.mark.parametrize(
    ("name", "ext"),
    [("budget.pdf", "pdf"), ("photo.JPG", "jpg"), ("a.tar.gz", "gz"), ("README", None), (".profile", None),
     ("trailing.", None), ("odd.p df", None)],
)  # fmt: skip
def test_extension(name: str, ext: str | None) -> None:
    assert extension(name) == ext


def test_images_get_the_image_placeholder() -> None:
    for name in ("a.jpg", "a.JPEG", "a.png", "a.gif"):
        assert placeholder_for(name, "/doc", "/img") == "/img"
    for name in ("a.pdf", "a.svg", "a.csv"):
        assert placeholder_for(name, "/doc", "/img") == "/doc"


def test_legacy_validators_stand_in_for_the_current_ones() -> None:
    base = AssetRecord(
        id="a", version=1, object_key="k", filename="f.pdf", etag='"new"', last_modified="2024-01-01"
    )
    assert as_legacy(base) is base
    legacy = as_legacy(replace(base, legacy_etag='"old"'))
    assert legacy.etag == '"old"' and legacy.last_modified == "2024-01-01"
    both = as_legacy(replace(base, legacy_etag='"old"', legacy_last_modified="2014-05-06"))
    assert (both.etag, both.last_modified) == ('"old"', "2014-05-06")


def test_records_store_the_normalised_path_and_round_trip() -> None:
    record = record_from_dict(
        {"id": "a1", "version": 1, "object_key": "k", "filename": "café.pdf",
         "legacy_url_path": "/government/uploads/file/café.pdf", "legacy_etag": '"e1"',
         "legacy_last_modified": "2014-01-01T00:00:00Z"}
    )  # fmt: skip
    assert record.legacy_url_path == "/government/uploads/file/caf%C3%A9.pdf"
    assert record_from_dict(record_to_dict(record)) == record


def test_bad_legacy_fields_are_named_each() -> None:
    with pytest.raises(RecordInvalid) as caught:
        record_from_dict(
            {"id": "a1", "version": 1, "object_key": "k", "filename": "f.pdf",
             "legacy_url_path": "/media/a1/f.pdf", "legacy_etag": 5, "legacy_last_modified": "x\ny"}
        )  # fmt: skip
    assert {e.field for e in caught.value.errors} == {
        "legacy_url_path",
        "legacy_etag",
        "legacy_last_modified",
    }
    assert "/media" not in str(caught.value.errors[0].message)
