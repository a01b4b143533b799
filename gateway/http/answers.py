"""The finished-answer cache for warm requests: direct `/media` answers and nginx's `/auth` answers,
each under its own key (the endpoint is part of it).

A full evaluation (parse → identify → lookup → decide → respond) is a function of the request's
method, raw path and query, a handful of headers, whether the peer is a trusted proxy, whether the
connection is TLS, the record, the policy and the time. This module keeps the finished answer
(status, headers, the error body) under a key holding *every* request input that function reads,
and keeps with it the exact objects it was computed from and the instant it stops being valid:

* the policy object (`CurrentPolicy.policy` is swapped whole on reload, so identity is enough);
* the value the record cache holds for the id (a packed record, or its MISSING marker), read with
  `peek`, so a write, an invalidation, a cleared cache or a TTL expiry all end the entry; the
  record unpacked from it is kept too, so a hit unpacks nothing;
* `[valid_from, valid_until)`: from the evaluation's instant to the earliest token expiry of the
  identity and, for a served file, the end of the shared presigned URL's window (after which a
  fresh answer carries another URL);
* for a served file, the presigned URL itself, compared on every hit with the one the presigner
  hands out now (which also catches rotated credentials), and `Cache-Control: public, max-age=` is
  recomputed from the URL's expiry by the responder, which owns that rule (an `/auth` answer carries
it as `X-Asset-Cache-Control`, recomputed the same way).

The key is derived from the parser's own declaration of the headers it reads
(`RequestParser.HEADERS`, and `PROXY_HEADERS` from a trusted proxy), so a new token source cannot be
added to the parser without the key holding it (tests/test_parsing.py checks the declaration).

Any check failing drops the entry and the request is evaluated in full. Only answers whose every
input is in the key or the checks above are stored: no replacement chains (they depend on other
records), no preview-cookie answer (its Max-Age counts down), no answer where a presented token was
rejected (a token that is not valid yet may become valid), nothing when the record cache is off.
Keys hold token strings: bounded in count and in characters, and never logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web
from cachetools import LRUCache

from gateway.http import wire
from gateway.http.runner import SERVER_HEADER
from gateway.models import AccessRequest, Action, AssetRecord, Decision, Identity, UserIdentity
from gateway.outcomes import OUTCOMES
from gateway.parsing import RawTokens, RequestParser
from gateway.pipeline import Evaluated
from gateway.policy.language import Policy
from gateway.responses import Responder
from gateway.state.cache import MISSING, CachedAssetStore, Missing
from gateway.state.packed import PackedRecord
from gateway.tokens import TokenVerifier

ANSWER_CACHE_SIZE: Final = 10_000
# Longest key (sum of its strings) worth keeping: real requests with a token or two are far below;
# huge cookies or queries are evaluated in full rather than pin up to ~64 KB per entry.
MAX_KEY_CHARS: Final = 4096
_HEADERS: Final = RequestParser.HEADERS
_PROXY_HEADERS: Final = RequestParser.PROXY_HEADERS

# Where each endpoint's answer carries the served file's Cache-Control: `/auth` hands nginx the
# direct answer's headers prefixed with X-Asset- (gateway.http.auth_request).
CACHE_CONTROL_HEADERS: Final = {"media": "Cache-Control", "auth": "X-Asset-Cache-Control"}

# endpoint, method, raw path, raw query, peer trusted, secure, then the value of each header in
# RequestParser.HEADERS and (None unless the peer is trusted) RequestParser.PROXY_HEADERS.
Key = tuple[str | bool | None, ...]


class CachedAnswer:
    """One finished answer and what it is valid for. Never changed once stored, but for the access
    line fields its hits share, encoded on the first."""

    __slots__ = (
        "access",
        "access_encoded",
        "asset_id",
        "body",
        "cache_control_at",
        "decision",
        "headers",
        "held",
        "host",
        "policy",
        "preview",
        "record",
        "session",
        "status",
        "subject",
        "url",
        "url_expires_at",
        "valid_from",
        "valid_until",
        "wire_body",
        "wire_head",
    )

    def __init__(
        self,
        *,
        policy: Policy,
        record: AssetRecord | Missing,
        held: PackedRecord | Missing,
        asset_id: str,
        valid_from: float,
        valid_until: float,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes | None,
        decision: Decision,
        access: AccessRequest,
        url: str | None,
        url_expires_at: int | None,
        cache_control_at: int | None,
        host: str,
        subject: str | None,
        preview: str | None,
        wire_head: bytes,
        wire_body: bytes,
        session: UserIdentity | None = None,
    ) -> None:
        self.policy = policy
        self.record = record  # the record the answer was built from, or MISSING
        self.held = held  # what the record cache held for it then (CachedAssetStore.held_for)
        self.asset_id = asset_id
        # [valid_from, valid_until): every time-dependent input holds throughout (the identity is
        # valid over an interval; one URL window); a clock stepping back before the evaluation misses.
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.status = status
        self.headers = headers
        self.body = body
        self.decision = decision
        self.access = access
        self.url = url  # SERVE with a presigned URL: the URL the answer carries
        self.url_expires_at = url_expires_at  # public SERVE: recompute max-age from this
        self.cache_control_at = cache_control_at  # index of the Cache-Control (or X-Asset-) header
        self.host = host
        self.subject = subject
        self.preview = preview
        self.session = session  # the revocable session the answer was made for, if any
        # The answer on the wire (gateway.http.wire) but for Date, X-Request-Id and a recomputed
        # Cache-Control, and the body bytes that follow the head (empty for HEAD, 204, 304).
        self.wire_head = wire_head
        self.wire_body = wire_body
        # The access line's fields every hit shares, encoded on the first (gateway.http.public):
        # the one attribute set after the entry is stored.
        self.access_encoded: str | None = None


def answer_key(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    trusted: bool,
    secure: bool,
    *,
    endpoint: str,
) -> Key | None:
    """Everything of the request that parsing reads, or None when it is too long to keep.
    `endpoint` ("media" or "auth") keeps the two renderings of one decision apart."""
    size = len(raw_path) + len(raw_query)
    key: list[str | bool | None] = [endpoint, method, raw_path, raw_query, trusted, secure]
    for name in _HEADERS:
        value = headers.get(name)
        if value is not None:
            size += len(value)
        key.append(value)
    for name in _PROXY_HEADERS:
        value = headers.get(name) if trusted else None
        if value is not None:
            size += len(value)
        key.append(value)
    if size > MAX_KEY_CHARS:
        return None
    return tuple(key)


def _cache_control_now(entry: CachedAnswer, now: float, responder: Responder) -> tuple[str, str] | None:
    """The entry's Cache-Control (or X-Asset-) header with max-age recomputed for `now`; None when
    it has none to recompute."""
    if entry.url_expires_at is None or entry.cache_control_at is None:
        return None
    name = entry.headers[entry.cache_control_at][0]
    return name, responder.cache_control_until(entry.url_expires_at, now)


def tokens_settled(tokens: RawTokens, identity: Identity, verifier: TokenVerifier, now: float) -> bool:
    """True when every token that could matter was accepted: the identity then only changes when
    one of its tokens expires. A rejected token (not valid yet, say) could turn valid later."""
    if tokens.user:
        if identity.user is None:
            return False
        # identify takes the first candidate that verifies: it must be the first one presented.
        if len(tokens.user) > 1 and verifier.verify_user(tokens.user[0], now) is None:
            return False
    if tokens.preview_query is not None:
        if not identity.preview_from_query:
            return False  # the query token was rejected (the cookie, if any, stood in)
    elif tokens.preview_cookie is not None and identity.preview is None:
        return False
    return True


class AnswerCache:
    """A bounded LRU of finished answers. One event loop owns it (not thread-safe)."""

    def __init__(
        self,
        size: int = ANSWER_CACHE_SIZE,
        *,
        revoked: Callable[[UserIdentity], bool] | None = None,
    ) -> None:
        self._entries: LRUCache[Key, CachedAnswer] = LRUCache(maxsize=max(size, 1))
        # A session revoked after its answer was stored must not be served from here.
        self._revoked = revoked
        self.hits = 0
        self.stored = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def lookup(
        self,
        key: Key,
        now: float,
        policy: Policy,
        store: CachedAssetStore,
        responder: Responder,
    ) -> CachedAnswer | None:
        """The entry for `key` if it is still exactly what a full evaluation would answer at `now`
        with this policy and the records cached now; otherwise None (and the entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (
            entry.valid_from <= now < entry.valid_until
            and entry.policy is policy
            and store.peek(entry.asset_id) is entry.held
            and (entry.session is None or self._revoked is None or not self._revoked(entry.session))
            and (
                entry.url is None
                or (
                    isinstance(entry.record, AssetRecord)
                    and responder.presigned_url(entry.decision, entry.access, entry.record, now) == entry.url
                )
            )
        ):
            self.hits += 1
            return entry
        del self._entries[key]
        return None

    def response(self, entry: CachedAnswer, now: float, responder: Responder) -> web.Response:
        """A new response carrying the stored answer (max-age recomputed for `now`)."""
        at, cache_control = entry.cache_control_at, _cache_control_now(entry, now, responder)
        if at is None or cache_control is None:
            return web.Response(status=entry.status, body=entry.body, headers=entry.headers)
        listed = list(entry.headers)
        listed[at] = cache_control
        return web.Response(status=entry.status, body=entry.body, headers=listed)

    def wire_response(self, entry: CachedAnswer, now: float, request_id: str, responder: Responder) -> bytes:
        """The same answer as `response`, as the bytes of a keep-alive HTTP/1.1 response."""
        cache_control = _cache_control_now(entry, now, responder)
        recomputed = () if cache_control is None else (cache_control,)
        head = wire.finish(entry.wire_head, *recomputed, ("X-Request-Id", request_id))
        return head + entry.wire_body if entry.wire_body else head

    def store(
        self,
        key: Key,
        result: Evaluated,
        response: web.StreamResponse,
        *,
        cache: CachedAssetStore,
        verifier: TokenVerifier,
        responder: Responder,
    ) -> bool:
        """Keep the answer a full evaluation just gave, if it may be reused; True when kept."""
        decision, access, identity, record, now = (
            result.decision, result.access, result.identity, result.record, result.now
        )  # fmt: skip
        if type(response) is not web.Response or not OUTCOMES[decision.action].cacheable:
            return False
        if response.cookies:
            return False  # a stored answer is rebuilt from its headers: a cookie would be lost
        if record is not None and record.replacement_id is not None:
            return False
        body = response.body
        if body is not None and not isinstance(body, bytes):
            return False
        asset_id = access.asset_id
        held = cache.held_for(asset_id, record)
        if held is None:
            return False  # not (or no longer) from the cached value: a hit could never be checked
        if not tokens_settled(result.tokens, identity, verifier, now):
            return False
        valid_until = float("inf")
        if identity.user is not None:
            valid_until = min(valid_until, identity.user.valid_until)
        if identity.preview is not None:
            valid_until = min(valid_until, identity.preview.valid_until)
        headers = tuple(response.headers.items())
        url: str | None = None
        url_expires_at: int | None = None
        cache_control_at: int | None = None
        if decision.action is Action.SERVE:
            assert record is not None
            _, expires_at = responder.url_window(decision, now)
            valid_until = min(valid_until, responder.same_url_until(decision, now))
            if not decision.not_modified:
                url = responder.presigned_url(decision, access, record, now)
                if url not in response.headers.values():
                    return False  # the answer does not carry the URL we would check against
            if not decision.private:
                names = [name for name, _ in headers]
                cache_control = CACHE_CONTROL_HEADERS[str(key[0])]
                if names.count(cache_control) != 1:
                    return False
                cache_control_at = names.index(cache_control)
                if headers[cache_control_at][1] != responder.cache_control_until(expires_at, now):
                    return False  # not the max-age we would recompute: do not guess
                url_expires_at = expires_at
        if not now < valid_until:
            return False
        method = str(key[1])
        recomputed = cache_control_at if url_expires_at is not None else None
        fixed = [header for at, header in enumerate(headers) if at != recomputed]
        fixed.append(("Server", SERVER_HEADER))
        try:
            wire_head = wire.head(response.status, fixed, body, method)
        except ValueError:
            return False  # a header the connection layer writes, or one it could not: not reusable
        wire_body = body if body and wire.sends_body(response.status, method) else b""
        self._entries[key] = CachedAnswer(
            policy=result.policy,
            record=MISSING if record is None else record,
            held=held,
            asset_id=asset_id,
            valid_from=now,
            valid_until=valid_until,
            status=response.status,
            headers=headers,
            body=body,
            decision=decision,
            access=access,
            url=url,
            url_expires_at=url_expires_at,
            cache_control_at=cache_control_at,
            host=access.host,
            subject=identity.user.sub if identity.user is not None else None,
            preview=identity.preview.sub if identity.preview is not None else None,
            session=identity.user if identity.user is not None and identity.user.sid is not None else None,
            wire_head=wire_head,
            wire_body=wire_body,
        )
        self.stored += 1
        return True
