"""Request parsing: raw HTTP facts → AccessRequest + RawTokens, tested without a server. Tables for
the edge cases, Hypothesis for "nothing but NotAnAsset/MethodNotAllowed ever escapes"."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.models import HostKind
from gateway.parsing import (
    _KNOWN_PEERS,
    MethodNotAllowed,
    NotAnAsset,
    RequestParser,
    is_trusted,
    split_asset_path,
)
from gateway.settings import load_settings

PARSER = RequestParser(load_settings(None, {}))  # live assets.example.org, draft draft-assets.example.org
PATH = "/media/5a1b2c/budget.pdf"
LIVE = {"Host": "assets.example.org"}
# Any character Python strings can hold, lone surrogates included (a URL given on the command line can
# carry them), mixed with fragments that reach the parsers' deeper branches often enough to matter.
FRAGMENTS = [
    "/",
    "/media/",
    "abc",
    "%",
    "%2F",
    "%C3%A9",
    "%FF",
    "%00",
    "\x00",
    "\udcff",
    "token=",
    "&",
    "=",
    ":",
]
ANY_TEXT = st.lists(
    st.one_of(st.characters(codec=None, exclude_categories=()), st.sampled_from(FRAGMENTS)), max_size=40
).map("".join)


# ---- split_asset_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/media/5a1b2c/budget.pdf", ("5a1b2c", "budget.pdf")),
        ("/media/5a1b2c/r%C3%A9sum%C3%A9.pdf", ("5a1b2c", "résumé.pdf")),
        ("/media/A-z_09/annual%20report.pdf", ("A-z_09", "annual report.pdf")),
        ("/media/a/b+c.pdf", ("a", "b+c.pdf")),  # a path is not a form: '+' stays '+'
        ("/media/" + "a" * 64 + "/x", ("a" * 64, "x")),
    ],
)
def test_split_asset_path_accepts(path: str, expected: tuple[str, str]) -> None:
    assert split_asset_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/files/5a1b2c/budget.pdf",
        "/Media/5a1b2c/budget.pdf",
        "media/5a1b2c/budget.pdf",
        "/media/5a1b2c",
        "/media/5a1b2c/",
        "/media/5a1b2c/extra/budget.pdf",
        "/media/5a1b2c/budget.pdf/",
        "//media/5a1b2c/budget.pdf",
        "/media//budget.pdf",
        "/media/5a.1b/budget.pdf",
        "/media/5a%201b/budget.pdf",
        "/media/" + "a" * 65 + "/budget.pdf",
        "/media/5a1b2c/%FF%FE.pdf",
        "/media/5a1b2c/r%C3sum.pdf",
        "/media/5a1b2c/a%2Fb.pdf",
        "/media/5a1b2c/a%2fb.pdf",
        "/media/5a1b2c/a%00b.pdf",
        "/media/5a1b2c/a\x00b.pdf",
        "/media/5a1b2c/" + "x" * 1025,
        "/media/5a1b2c/" + "%C3%A9" * 513,  # 1026 bytes decoded
        "",
        "/",
    ],
)
def test_split_asset_path_rejects(path: str) -> None:
    with pytest.raises(NotAnAsset):
        split_asset_path(path)


@settings(max_examples=200)
@given(st.one_of(ANY_TEXT, ANY_TEXT.map(lambda s: "/media/abc/" + s)))
def test_split_asset_path_raises_only_not_an_asset(path: str) -> None:
    try:
        asset_id, filename = split_asset_path(path)
    except NotAnAsset:
        return
    assert path.startswith(f"/media/{asset_id}/")
    assert filename and "/" not in filename and "\x00" not in filename
    assert len(filename.encode()) <= 1024


@settings(max_examples=200)
@given(
    st.text(st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)), min_size=1, max_size=60)
)
def test_split_asset_path_round_trips_quoted_names(filename: str) -> None:
    assert split_asset_path(f"/media/abc/{quote(filename, safe='')}") == ("abc", filename)


# ---- RequestParser.parse: hosts and proxies


@pytest.mark.parametrize(
    ("host", "kind", "shown"),
    [
        ("assets.example.org", HostKind.LIVE, "assets.example.org"),
        ("assets.example.org:8443", HostKind.LIVE, "assets.example.org"),  # the configured port: none
        ("ASSETS.Example.ORG", HostKind.LIVE, "assets.example.org"),
        ("assets.example.org.", HostKind.LIVE, "assets.example.org"),
        ("draft-assets.example.org", HostKind.DRAFT, "draft-assets.example.org"),
        ("Draft-Assets.example.org:80", HostKind.DRAFT, "draft-assets.example.org"),
        ("evil.example", HostKind.OTHER, "evil.example"),
        ("127.0.0.1:8080", HostKind.OTHER, "127.0.0.1:8080"),
        ("", HostKind.OTHER, ""),
        ("assets.example.org:99999", HostKind.OTHER, ""),
        ("assets.example.org@evil.example", HostKind.OTHER, ""),
        ("assets.example.org/x", HostKind.OTHER, ""),
    ],
)
def test_host_kind(host: str, kind: HostKind, shown: str) -> None:
    request, _, _ = PARSER.parse("GET", PATH, "", {"Host": host})
    assert request.host_kind is kind
    assert request.host == shown


PORTED = RequestParser(
    load_settings(None, {"GATEWAY_HOSTS_LIVE": "assets.localhost:8080", "GATEWAY_HOSTS_DRAFT": "d.localhost"})
)


@pytest.mark.parametrize(
    ("headers", "peer", "origin"),
    [
        ({"Host": "assets.localhost:8080"}, None, ("http", "assets.localhost", 8080)),
        ({"Host": "assets.localhost:6666"}, None, ("http", "assets.localhost", 8080)),
        ({"Host": "assets.localhost"}, None, ("http", "assets.localhost", 8080)),
        ({"Host": "d.localhost:6666"}, None, ("http", "d.localhost", None)),
        (
            {"Host": "assets.localhost", "X-Forwarded-Host": "assets.localhost:6666"},
            "127.0.0.1",
            ("http", "assets.localhost", 8080),
        ),
        ({"Host": "assets.localhost", "X-Forwarded-Host": "evil:6666"}, "127.0.0.1", ("http", "evil", 6666)),
    ],
)
def test_configured_hosts_keep_their_configured_port(
    headers: dict[str, str], peer: str | None, origin: tuple[str, str, int | None]
) -> None:
    """Whatever port the request names, a configured host is built back with its configured one;
    a host that is not configured never gets an answer that names it (see test_responses)."""
    found = PORTED.origin(headers, peer, secure=False)
    assert (found.scheme, found.hostname, found.port) == origin


def test_parse_fills_the_request() -> None:
    request, tokens, origin = PARSER.parse(
        "HEAD", "/media/5a1b2c/r%C3%A9sum%C3%A9.pdf", "a=1", {**LIVE, "If-None-Match": '"v1"'}, secure=True
    )
    assert (request.method, request.scheme, request.asset_id) == ("HEAD", "https", "5a1b2c")
    assert request.filename == "résumé.pdf"
    assert request.path == "/media/5a1b2c/r%C3%A9sum%C3%A9.pdf"
    assert request.query == "a=1"
    assert request.if_none_match == '"v1"'
    assert (origin.scheme, origin.hostname, origin.port) == ("https", "assets.example.org", None)
    assert tokens.user == () and tokens.preview_query is None and tokens.preview_cookie is None


FORWARDED = {
    "Host": "gateway.internal:8080",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "draft-assets.example.org",
}


def test_forwarded_headers_believed_from_a_trusted_proxy() -> None:
    request, _, origin = PARSER.parse("GET", PATH, "", FORWARDED, peer="127.0.0.1")
    assert request.scheme == "https"
    assert request.host_kind is HostKind.DRAFT
    assert request.host == "draft-assets.example.org"
    assert (origin.scheme, origin.hostname, origin.port) == ("https", "draft-assets.example.org", None)


@pytest.mark.parametrize("peer", ["10.1.2.3", "127.0.0.2", "::1", None, "", "not-an-ip"])
def test_forwarded_headers_ignored_from_others(peer: str | None) -> None:
    request, _, origin = PARSER.parse("GET", PATH, "", FORWARDED, peer=peer)
    assert request.scheme == "http"
    assert request.host_kind is HostKind.OTHER
    assert request.host == "gateway.internal:8080"
    assert (origin.hostname, origin.port) == ("gateway.internal", 8080)


class RecordingHeaders(Mapping[str, str]):
    """Request headers that remember every name asked for, however it is asked."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = CIMultiDict(headers)
        self.asked: set[str] = set()
        self.listed = False

    def __getitem__(self, name: str) -> str:
        self.asked.add(name.lower())
        return self._headers[name]

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name).lower())
        return name in self._headers

    def __iter__(self) -> Iterator[str]:
        self.listed = True
        return iter(self._headers)

    def __len__(self) -> int:
        self.listed = True
        return len(self._headers)


# Every header a browser or proxy could carry a token or a hint in, and the ones the parser reads.
EVERY_HEADER = {
    "Host": "assets.example.org",
    "If-None-Match": '"v1"',
    "Authorization": "Bearer header-token",
    "Cookie": "gateway_session=session-token; auth_bypass_token=preview-token; other=1",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "draft-assets.example.org",
    "X-Forwarded-For": "192.0.2.1",
    "X-Api-Key": "k",
    "X-Auth-Token": "t",
    "Proxy-Authorization": "Basic eA==",
    "Referer": "https://www.example.org/",
    "User-Agent": "test",
    "Accept": "*/*",
}


@pytest.mark.parametrize("peer", ["127.0.0.1", "10.1.2.3"])
@pytest.mark.parametrize("query", ["", "token=preview-in-query&a=1"])
@pytest.mark.parametrize("left_out", [None, *EVERY_HEADER])
def test_parse_reads_only_the_headers_the_answer_cache_keys_on(
    peer: str, query: str, left_out: str | None
) -> None:
    """The answer cache keys on RequestParser.HEADERS (and PROXY_HEADERS from a trusted proxy):
    a header read without being declared, a new token source say, fails here. Each header is also
    left out once, so a source read only when another is absent is asked for too."""
    headers = RecordingHeaders({k: v for k, v in EVERY_HEADER.items() if k != left_out})
    _, tokens, _ = PARSER.parse("GET", PATH, query, headers, peer=peer)
    if left_out is None:
        assert tokens.user and tokens.preview_cookie  # the token sources were really read
    declared = set(RequestParser.HEADERS)
    if PARSER.is_trusted(peer):
        declared |= set(RequestParser.PROXY_HEADERS)
    assert headers.asked <= {name.lower() for name in declared}, headers.asked
    assert not headers.listed  # reading every header would make any of them an input


def test_forwarded_proto_other_than_http_is_ignored() -> None:
    headers = {**LIVE, "X-Forwarded-Proto": "gopher"}
    request, _, _ = PARSER.parse("GET", PATH, "", headers, peer="127.0.0.1", secure=True)
    assert request.scheme == "https"


def test_first_of_several_forwarded_values_wins() -> None:
    headers = {"Host": "x", "X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "assets.example.org, y"}
    request, _, _ = PARSER.parse("GET", PATH, "", headers, peer="127.0.0.1")
    assert (request.scheme, request.host_kind) == ("https", HostKind.LIVE)


# ---- methods


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "get", "PATCH"])
def test_other_methods_on_an_asset_path_are_not_allowed(method: str) -> None:
    with pytest.raises(MethodNotAllowed):
        PARSER.parse(method, PATH, "", LIVE)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_non_asset_path_is_not_an_asset_whatever_the_method(method: str) -> None:
    with pytest.raises(NotAnAsset):
        PARSER.parse(method, "/admin/assets/5a1b2c", "", LIVE)


# ---- tokens


@pytest.mark.parametrize(
    ("query", "kept", "token"),
    [
        ("token=abc.def.ghi", "", "abc.def.ghi"),
        ("token=abc.def.ghi&page=2", "page=2", "abc.def.ghi"),
        ("page=2&token=abc.def.ghi&lang=en", "page=2&lang=en", "abc.def.ghi"),
        ("token=first&token=second&page=2", "page=2", "first"),
        ("token=&page=2", "page=2", None),
        ("mytoken=x&page=2", "mytoken=x&page=2", None),
        ("page=2", "page=2", None),
        ("", "", None),
        # the rest of the query is kept as received, not re-encoded
        ("q=a%20b+c&token=T&flag&x=%7E", "q=a%20b+c&flag&x=%7E", "T"),
        ("a=1&&token=T&", "a=1", "T"),
        ("tok%65n=T&page=2", "tok%65n=T&page=2", None),  # not "token=" as sent: neither a token nor dropped
        ("page=2&token=a%2Bb%3D", "page=2", "a+b="),
    ],
)
def test_preview_token_leaves_the_query(query: str, kept: str, token: str | None) -> None:
    request, tokens, _ = PARSER.parse("GET", PATH, query, LIVE)
    assert request.query == kept
    assert tokens.preview_query == token


@pytest.mark.parametrize(
    ("headers", "user"),
    [
        ({"Authorization": "Bearer AAA", "Cookie": "gateway_session=BBB"}, ("AAA", "BBB")),
        ({"Authorization": "bearer  AAA "}, ("AAA",)),
        ({"Cookie": "other=1; gateway_session=BBB"}, ("BBB",)),
        ({"Authorization": "Basic dXNlcjpwdw=="}, ()),
        ({"Authorization": "Bearer "}, ()),
        ({"Authorization": "BearerAAA"}, ()),
        ({"Cookie": "gateway_session="}, ()),
    ],
)
def test_user_tokens_bearer_first_then_session_cookie(headers: dict[str, str], user: tuple[str, ...]) -> None:
    _, tokens, _ = PARSER.parse("GET", PATH, "", {**LIVE, **headers})
    assert tokens.user == user


def test_preview_cookie_and_query_are_both_kept() -> None:
    headers = {**LIVE, "Cookie": "auth_bypass_token=PPP; gateway_session=SSS"}
    _, tokens, _ = PARSER.parse("GET", PATH, "token=QQQ", headers)
    assert tokens.preview_cookie == "PPP"
    assert tokens.preview_query == "QQQ"
    assert tokens.user == ("SSS",)


@pytest.mark.parametrize(
    "cookie",
    ['"\x00;;;===', "=; ;=;", 'gateway_session="unterminated', "a=b; $Path=/; \\\\;", "\udcff=1", ";" * 100],
)
def test_garbage_cookie_header_does_not_raise(cookie: str) -> None:
    _, tokens, _ = PARSER.parse("GET", PATH, "", {**LIVE, "Cookie": cookie})
    assert isinstance(tokens.user, tuple)
    assert tokens.preview_cookie is None or isinstance(tokens.preview_cookie, str)


# ---- properties

HEADER_NAMES = st.sampled_from(
    ["Host", "X-Forwarded-Proto", "X-Forwarded-Host", "Authorization", "Cookie", "If-None-Match"]
)
PEERS = st.one_of(st.none(), st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "fe80::1%eth0"]), ANY_TEXT)


@settings(max_examples=200)
@given(
    method=st.one_of(st.sampled_from(["GET", "HEAD", "POST"]), ANY_TEXT),
    path=st.one_of(ANY_TEXT, ANY_TEXT.map(lambda s: "/media/abc/" + s)),
    query=st.one_of(ANY_TEXT, ANY_TEXT.map(lambda s: "token=" + s)),
    headers=st.dictionaries(HEADER_NAMES, ANY_TEXT, max_size=6),
    peer=PEERS,
    secure=st.booleans(),
)
def test_parse_raises_only_not_an_asset_or_method_not_allowed(
    method: str, path: str, query: str, headers: dict[str, str], peer: str | None, secure: bool
) -> None:
    try:
        request, tokens, origin = PARSER.parse(method, path, query, headers, peer=peer, secure=secure)
    except (NotAnAsset, MethodNotAllowed):
        return
    assert request.method in ("GET", "HEAD")
    assert request.scheme in ("http", "https") and origin.scheme == request.scheme
    assert request.host == request.host.lower()
    assert isinstance(tokens.user, tuple)


B64URL = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
    min_size=4,
    max_size=40,
)
TOKENS = st.tuples(B64URL, B64URL, B64URL).map(".".join)  # JWT-shaped: the '.' sets it apart below
OTHER_PARAMS = st.lists(
    st.tuples(
        st.sampled_from(["page", "lang", "utm_source", "tokens", "x"]),
        st.text(st.sampled_from("0123456789 %&=+"), max_size=8),
    ),
    max_size=4,
)


@settings(max_examples=200)
@given(token=TOKENS, before=OTHER_PARAMS, after=OTHER_PARAMS, param=st.sampled_from(["token", "preview"]))
def test_query_never_contains_the_preview_token(
    token: str, before: list[tuple[str, str]], after: list[tuple[str, str]], param: str
) -> None:
    parser = RequestParser(load_settings(None, {"GATEWAY_TOKENS_PREVIEW_PARAM": param}))
    pairs = [*before, (param, token), *after]
    query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs)
    request, tokens, _ = parser.parse("GET", PATH, query, LIVE)
    assert token not in request.query
    assert tokens.preview_query == token
    assert parse_qsl(request.query, keep_blank_values=True) == [*before, *after]


@given(st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "fe80::1%eth0", "", "not-an-ip", "127.0.0.1 "]))
def test_remembered_trust_agrees_with_is_trusted(peer: str) -> None:
    parser = RequestParser(load_settings(None, {"GATEWAY_SERVER_TRUSTED_PROXIES": "127.0.0.0/8,::1/128"}))
    expected = is_trusted(peer, parser._trusted)
    assert parser.is_trusted(peer) is expected
    assert parser.is_trusted(peer) is expected  # the second answer comes from memory


def test_remembered_trust_is_bounded() -> None:
    parser = RequestParser(load_settings(None, {}))
    for n in range(_KNOWN_PEERS + 10):
        parser.is_trusted(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(parser._peer_trust) <= _KNOWN_PEERS
    assert parser.is_trusted("127.0.0.1")
