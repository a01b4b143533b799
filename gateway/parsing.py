"""Step one of a request: raw HTTP facts → an AccessRequest and the raw tokens it carries.
Pure: the handler passes in what aiohttp saw, so every edge case is testable without a server."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, unquote_plus

from gateway.legacy import LEGACY_PREFIX, NotALegacyPath, extension, file_name, normalise_legacy_path
from gateway.models import AccessRequest, HostKind
from gateway.records import ASSET_ID
from gateway.settings import Network, Settings

MAX_FILENAME_BYTES = 1024
# A Cookie header longer than this is read as carrying no cookies. The listener refuses header
# fields past `server.max_header_size` (8 KB by default) before this runs; this is the parser's own
# bound for listeners configured larger. Reading is linear, so the bound is about memory, not time.
MAX_COOKIE_HEADER = 65536
_KNOWN_PEERS = 4096  # peer addresses whose trust is remembered (a few proxies, or every client)
_HOST = re.compile(r"(?P<name>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


class NotAnAsset(Exception):
    """The path is not `/media/{id}/{filename}` nor a legacy path with a file extension: 404."""


class MethodNotAllowed(Exception):
    """An asset path with a method other than GET or HEAD: 405."""


@dataclass(frozen=True, slots=True)
class RawTokens:
    """Token strings as found, not yet verified. Never logged."""

    user: tuple[str, ...] = ()  # Bearer header first, then the session cookie
    preview_query: str | None = None
    preview_cookie: str | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the browser thinks it is: scheme and host (with port) for building absolute URLs."""

    scheme: str
    hostname: str
    port: int | None


def parse_host(value: str) -> tuple[str, int | None] | None:
    """`Host` header → (lower-case hostname, port); None when it is not a plain host[:port]."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        return None
    return match["name"].rstrip("."), int(port) if port else None


def configured_hosts(entries: tuple[str, ...]) -> dict[str, int | None]:
    """`hosts.live` / `hosts.draft` entries ("name" or "name:port") → {name: port or None}."""
    hosts: dict[str, int | None] = {}
    for entry in entries:
        parsed = parse_host(entry)
        if parsed is not None:
            hosts.setdefault(parsed[0], parsed[1])
    return hosts


def is_trusted(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    if not peer or not trusted:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    return any(address in network for network in trusted)


def split_asset_path(path: str) -> tuple[str, str]:
    """`/media/{id}/{filename}` (raw, percent-encoded) → (id, decoded filename)."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] or parts[1] != "media":
        raise NotAnAsset
    asset_id, raw_name = parts[2], parts[3]
    if ASSET_ID.fullmatch(asset_id) is None or not raw_name or len(raw_name) > 3 * MAX_FILENAME_BYTES:
        raise NotAnAsset
    try:
        filename = unquote(raw_name, errors="strict")
        size = len(filename.encode())  # a lone surrogate (a URL given on the command line) cannot encode
    except UnicodeError:
        raise NotAnAsset from None
    if "/" in filename or "\x00" in filename or size > MAX_FILENAME_BYTES:
        raise NotAnAsset
    return asset_id, filename


def split_legacy_path(path: str) -> tuple[str, str]:
    """`/government/uploads/...` (raw) → (normalised path, decoded file name); a path that does not
    normalise or whose name has no file extension is not an asset (DESIGN 2.8)."""
    try:
        normalised = normalise_legacy_path(path)
    except NotALegacyPath:
        raise NotAnAsset from None
    name = file_name(normalised)
    if extension(name) is None:
        raise NotAnAsset
    return normalised, name


class RequestParser:
    """Built once from settings; `parse` runs per request.

    Besides its arguments (method, path, query, whether the peer is a trusted proxy, whether the
    connection is TLS), `parse` reads exactly the request headers declared below. The answer cache
    keys finished answers on them (gateway.http.answers): a header read without being declared
    here, a new token source say, would let one person's cached answer reach another, so
    tests/test_parsing.py fails when `parse` touches any header not in this declaration."""

    # Host and its validator, and every token source (the Bearer header; session and preview cookies).
    HEADERS: Final = ("Host", "If-None-Match", "Authorization", "Cookie")
    # Read only when the peer is a trusted proxy.
    PROXY_HEADERS: Final = ("X-Forwarded-Proto", "X-Forwarded-Host")

    def __init__(self, settings: Settings) -> None:
        self._live = configured_hosts(settings.hosts.live)
        self._draft = configured_hosts(settings.hosts.draft)
        self._trusted = settings.server.trusted_proxies
        self._session_cookie = settings.tokens.session_cookie
        self._preview_cookie = settings.tokens.preview_cookie
        self._preview_param = settings.tokens.preview_param
        self._cookie_names = frozenset((self._session_cookie, self._preview_cookie))
        self._peer_trust: dict[str, bool] = {}

    def host_kind(self, hostname: str) -> HostKind:
        if hostname in self._live:
            return HostKind.LIVE
        if hostname in self._draft:
            return HostKind.DRAFT
        return HostKind.OTHER

    def is_trusted(self, peer: str | None) -> bool:
        """`is_trusted` against the configured proxies, remembered per address: parsing an address
        costs more than the rest of `parse` together."""
        if not peer:
            return False
        trusted = self._peer_trust.get(peer)
        if trusted is None:
            if len(self._peer_trust) >= _KNOWN_PEERS:
                self._peer_trust.clear()
            trusted = self._peer_trust[peer] = is_trusted(peer, self._trusted)
        return trusted

    def origin(self, headers: Mapping[str, str], peer: str | None, secure: bool) -> Origin:
        """Scheme and host the browser used; X-Forwarded-* only from configured proxies. For a
        configured host the port is the configured one (usually none), never the request's: the
        absolute URLs built from an Origin name only configured hosts, so no Host or
        X-Forwarded-Host can steer a redirect (a cached one above all) to another port."""
        scheme = "https" if secure else "http"
        host_header = headers.get("Host", "")
        if self.is_trusted(peer):
            proto = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scheme = proto
            forwarded_host = headers.get("X-Forwarded-Host", "").split(",")[0].strip()
            if forwarded_host:
                host_header = forwarded_host
        parsed = parse_host(host_header)
        hostname, port = parsed if parsed is not None else ("", None)
        for configured in (self._live, self._draft):
            if hostname in configured:
                return Origin(scheme, hostname, configured[hostname])
        return Origin(scheme, hostname, port)

    def parse(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        *,
        peer: str | None = None,
        secure: bool = False,
    ) -> tuple[AccessRequest, RawTokens, Origin]:
        legacy_path = None
        if path.startswith(LEGACY_PREFIX):
            legacy_path, filename = split_legacy_path(path)
            asset_id = ""  # the lookup finds it by the path
        else:
            asset_id, filename = split_asset_path(path)
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed
        origin = self.origin(headers, peer, secure)
        query, preview_query = self._split_query(query_string)
        request = AccessRequest(
            method=method,
            scheme=origin.scheme,
            host=origin.hostname if origin.port is None else f"{origin.hostname}:{origin.port}",
            host_kind=self.host_kind(origin.hostname),
            asset_id=asset_id,
            filename=filename,
            path=path,
            query=query,
            if_none_match=headers.get("If-None-Match"),
            route="media" if legacy_path is None else "legacy",
            legacy_path=legacy_path,
        )
        return request, self._tokens(headers, preview_query), origin

    def _split_query(self, query_string: str) -> tuple[str, str | None]:
        if not query_string:
            return "", None
        if f"{self._preview_param}=" not in query_string:
            return query_string, None
        # Drop the token's pieces and keep the others as received: re-encoding would change the query
        # the browser is redirected to, and fails on characters that cannot be encoded.
        token: str | None = None
        rest = []
        for piece in query_string.split("&"):
            name, _, value = piece.partition("=")
            if unquote_plus(name) == self._preview_param:
                token = unquote_plus(value) if token is None else token
            elif piece:
                rest.append(piece)
        return "&".join(rest), token or None

    def _tokens(self, headers: Mapping[str, str], preview_query: str | None) -> RawTokens:
        user: list[str] = []
        authorization = headers.get("Authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            user.append(credentials.strip())
        cookies = read_cookies(headers.get("Cookie", ""), self._cookie_names)
        session = cookies.get(self._session_cookie)
        if session:
            user.append(session)
        return RawTokens(tuple(user), preview_query, cookies.get(self._preview_cookie) or None)


_COOKIE_WHITESPACE = " \t"


def read_cookies(header: str, names: frozenset[str]) -> dict[str, str]:
    """The values of the cookies called `names` in a Cookie header (RFC 6265 5.4 / 4.2.1).

    Linear in the header and bounded by MAX_COOKIE_HEADER: `http.cookies.SimpleCookie` is quadratic
    on some inputs (CVE-2024-7592) and decodes every pair, where we read two. Pairs are split on `;`,
    name and value trimmed of spaces and tabs, one pair of surrounding double quotes dropped from a
    value (no backslash escapes: RFC 6265 has none). When a name repeats, the first pair wins: user
    agents send the cookie with the most specific path first. Pairs without `=` are skipped."""
    found: dict[str, str] = {}
    if not header or len(header) > MAX_COOKIE_HEADER:
        return found
    for pair in header.split(";"):
        name, equals, value = pair.partition("=")
        if not equals:
            continue
        name = name.strip(_COOKIE_WHITESPACE)
        if name not in names or name in found:
            continue
        value = value.strip(_COOKIE_WHITESPACE)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found[name] = value
    return found
