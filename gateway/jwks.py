"""Signing keys an identity provider publishes at a JWKS URL, kept current without a restart.

Token checks stay synchronous and free of I/O: they read `RemoteKeySet.get(kid)` from memory. The
network is touched at start, by a background refresh, and when a token names a kid nobody has seen;
that last one at most once per `MISS_INTERVAL` per source, so a flood of made-up kids costs one
fetch. Concurrent fetches share one request, and a failed fetch (error, timeout, a bad document)
keeps the last good keys serving: the failure is logged and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from gateway.background import SingleFlight

log = logging.getLogger(__name__)

MISS_INTERVAL: Final = 30.0  # seconds between fetches caused by unknown kids
REFRESH_INTERVAL: Final = 300.0  # seconds between background refreshes
FETCH_TIMEOUT: Final = 5.0
MAX_DOCUMENT_BYTES: Final = 512 * 1024
# Algorithms a fetched key may be pinned to; HMAC and none can never come from a public document.
ASYMMETRIC: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

Fetch = Callable[[str], Awaitable[bytes]]


class KeySetError(ValueError):
    """The document is not a usable JWKS; the message says why, without quoting it."""


@dataclass(frozen=True, slots=True)
class RemoteKey:
    """One verification key: `alg` is the only algorithm it verifies, fixed by the JWK itself (or
    the configured `alg`), never by a token's header."""

    kid: str | None
    alg: str
    key: Any  # a cryptography public key


def parse_key_set(document: bytes, pinned_alg: str = "") -> dict[str | None, RemoteKey]:
    """JWKS bytes → signature keys by kid. Encryption keys and keys of unusable types are skipped
    (an IdP may publish keys for other purposes); a document with no usable key is an error."""
    try:
        entries = json.loads(document)["keys"]
    except (ValueError, KeyError, TypeError):
        raise KeySetError('expected a JWKS document {"keys": [...]}') from None
    if not isinstance(entries, list):
        raise KeySetError("expected a list of keys")
    keys: dict[str | None, RemoteKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        declared = entry.get("alg")
        alg = pinned_alg or declared or _implied_alg(entry)
        if alg not in ASYMMETRIC or (pinned_alg and declared not in (None, pinned_alg)):
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            # PyJWK's error text can quote the key; it is never passed on.
            public = jwt.PyJWK(entry, algorithm=alg).key
        except Exception:  # noqa: S112 - one bad entry must not hide the good ones
            continue
        if hasattr(public, "public_key") and not hasattr(public, "verify"):
            public = public.public_key()  # a private JWK published by mistake still only verifies
        keys[kid] = RemoteKey(kid, alg, public)
    if not keys:
        raise KeySetError("no usable signature keys")
    return keys


def _implied_alg(entry: Mapping[str, Any]) -> str:
    kty, crv = entry.get("kty"), entry.get("crv")
    if kty == "RSA":
        return "RS256"
    if kty == "EC":
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(str(crv), "")
    if kty == "OKP" and crv in ("Ed25519", "Ed448"):
        return "EdDSA"
    return ""


async def fetch_with_aiohttp(url: str) -> bytes:
    """GET `url` with a timeout and a size limit; raises on anything but a 200."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        if response.status != 200:
            raise KeySetError(f"HTTP {response.status}")
        body = await read_at_most(response.content, MAX_DOCUMENT_BYTES)
        if body is None:
            raise KeySetError("document too large")
        return body


async def read_at_most(content: Any, limit: int) -> bytes | None:
    """The whole body if it is no longer than `limit` bytes, else None (reading stops there)."""
    chunks, size = [], 0
    async for chunk in content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class RemoteKeySet:
    """The keys of one JWKS URL. One event loop owns it. `url` may be set later (discovery)."""

    def __init__(
        self,
        url: str = "",
        *,
        pinned_alg: str = "",
        fetch: Fetch = fetch_with_aiohttp,
        clock: Callable[[], float] = time.monotonic,
        miss_interval: float = MISS_INTERVAL,
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.url = url
        self._pinned_alg = pinned_alg
        self._fetch = fetch
        self._clock = clock
        self._miss_interval = miss_interval
        self.refresh_interval = refresh_interval
        self._keys: dict[str | None, RemoteKey] = {}
        self._fetching = SingleFlight(self._load, name="jwks-fetch")
        self._last_miss_fetch = -float("inf")  # only fetches caused by unknown kids are limited
        self.fetches = 0  # requests actually sent
        self.failures = 0  # fetches that failed (the last good keys kept serving)
        self.loaded = asyncio.Event()  # set once any key set has been loaded

    def get(self, kid: str | None) -> RemoteKey | None:
        """The key a token's header names; a kid-less token matches only a lone key."""
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        return key

    def knows(self, kid: str | None) -> bool:
        return self.get(kid) is not None

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(self._keys)

    def miss_refresh_due(self) -> bool:
        """Whether an unknown kid may cause a fetch now (the negative cache answers otherwise)."""
        return bool(self.url) and self._clock() - self._last_miss_fetch >= self._miss_interval

    async def refresh_for_unknown(self, kid: str | None) -> bool:
        """Fetch again for a kid we do not know, unless one was fetched recently; True when the kid
        is known afterwards."""
        if self.knows(kid):
            return True
        if not self._fetching.running:
            if not self.miss_refresh_due():
                return False
            self._last_miss_fetch = self._clock()
        await self.refresh()
        return self.knows(kid)

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch already running. True when new keys were loaded."""
        if not self.url:
            return False
        return await self._fetching.run()

    async def _load(self) -> bool:
        self.fetches += 1
        try:
            keys = parse_key_set(await self._fetch(self.url), self._pinned_alg)
        except Exception as exc:
            self.failures += 1
            kept = f"keeping the {len(self._keys)} keys we have" if self._keys else "no keys yet"
            log.warning("could not fetch signing keys from %s (%s); %s", self.url, _why(exc), kept)
            return False
        self._keys = keys
        self.loaded.set()
        return True

    async def run(self) -> None:
        """Background refresh for the life of the process (cancel to stop); the first fetch is
        the caller's, at start."""
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self.refresh()


def _why(exc: BaseException) -> str:
    """A short reason for the log: the class, and our own messages (never a document's text)."""
    if isinstance(exc, KeySetError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
