"""Reading our two cookies out of a Cookie header: RFC 6265 pairs, linear in the header, bounded.
`http.cookies.SimpleCookie` took over a second of CPU on one crafted header (CVE-2024-7592)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.parsing import MAX_COOKIE_HEADER, RequestParser, read_cookies
from gateway.settings import load_settings

NAMES = frozenset({"gateway_session", "auth_bypass_token"})
PARSER = RequestParser(load_settings(None, {}))
PATH = "/media/5a1b2c/budget.pdf"
LIVE = {"Host": "assets.example.org"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gateway_session=abc", {"gateway_session": "abc"}),
        ("a=1; gateway_session=abc; b=2", {"gateway_session": "abc"}),
        ("a=1;gateway_session=abc", {"gateway_session": "abc"}),
        ("  gateway_session \t=\t abc  ", {"gateway_session": "abc"}),
        ('gateway_session="abc"', {"gateway_session": "abc"}),
        ('gateway_session="a b"', {"gateway_session": "a b"}),
        ('gateway_session="', {"gateway_session": '"'}),
        ('gateway_session=""', {"gateway_session": ""}),
        ("gateway_session=a=b=c", {"gateway_session": "a=b=c"}),
        ("gateway_session=first; gateway_session=second", {"gateway_session": "first"}),
        ("auth_bypass_token=p; gateway_session=s", {"auth_bypass_token": "p", "gateway_session": "s"}),
        ("Gateway_Session=abc", {}),  # names are case-sensitive
        ("gateway_session", {}),  # a pair without `=` is skipped
        ("xgateway_session=abc", {}),
        ("", {}),
    ],
)
def test_pairs_we_read(header: str, expected: dict[str, str]) -> None:
    assert read_cookies(header, NAMES) == expected


def _reference(header: str, names: frozenset[str]) -> dict[str, str]:
    """RFC 6265 5.4 read literally, pair by pair, written for clarity rather than speed."""
    found: dict[str, str] = {}
    position = 0
    while position <= len(header):
        end = header.find(";", position)
        end = len(header) if end == -1 else end
        pair = header[position:end]
        position = end + 1
        if "=" not in pair:
            continue
        index = pair.index("=")
        name, value = pair[:index].strip(" \t"), pair[index + 1 :].strip(" \t")
        if value.startswith('"') and value.endswith('"') and len(value) > 1:
            value = value[1:-1]
        if name in names and name not in found:
            found[name] = value
    return found


PIECES = st.sampled_from(
    ["gateway_session", "auth_bypass_token", "=", ";", " ", "\t", '"', "\\", "a", "x=y", "tok.en-_"]
)
HEADERS = st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=40).map("".join)


@given(HEADERS)
def test_agrees_with_the_rfc_reading(header: str) -> None:
    assert read_cookies(header, NAMES) == _reference(header, NAMES)


OUR_PAIRS = st.dictionaries(
    st.sampled_from(sorted(NAMES)), st.from_regex(r"[A-Za-z0-9._-]{0,40}", fullmatch=True)
)
OTHER_PAIRS = st.lists(st.from_regex(r"[a-z]{1,8}=[a-z0-9]{0,8}", fullmatch=True), max_size=10)


@given(OUR_PAIRS, OTHER_PAIRS, st.booleans())
def test_finds_our_cookies_among_others(ours: dict[str, str], others: list[str], quoted: bool) -> None:
    pairs = [f'{name}="{value}"' if quoted else f"{name}={value}" for name, value in ours.items()]
    header = "; ".join(others + pairs + others)
    assert read_cookies(header, NAMES) == ours


def test_the_cve_2024_7592_header_is_read_correctly() -> None:
    """The header that cost 1.38 s of CPU in SimpleCookie: an opening quote and 16,000 backslashes.
    Correctness and completion here; the pytest timeout bounds it."""
    header = 'a="' + "\\" * 16000 + '"; gateway_session=tok'
    assert len(header) <= MAX_COOKIE_HEADER
    assert read_cookies(header, NAMES) == {"gateway_session": "tok"}
    assert read_cookies(header + "x" * MAX_COOKIE_HEADER, NAMES) == {}  # over the bound: not read


def test_thousands_of_pairs_are_read_correctly() -> None:
    header = "; ".join(f"c{n}=v" for n in range(1800)) + "; auth_bypass_token=p"
    assert len(header) <= MAX_COOKIE_HEADER
    assert read_cookies(header, NAMES) == {"auth_bypass_token": "p"}


def test_an_oversized_header_carries_no_cookies() -> None:
    header = "gateway_session=tok; pad=" + "x" * MAX_COOKIE_HEADER
    assert read_cookies(header, NAMES) == {}


def test_the_parser_reads_the_configured_names() -> None:
    _, tokens, _ = PARSER.parse(
        "GET", PATH, "", {**LIVE, "Cookie": 'a="\\\\\\"; gateway_session="S"; auth_bypass_token=P'}
    )
    assert tokens.user == ("S",)
    assert tokens.preview_cookie == "P"
