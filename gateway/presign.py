"""S3 presigned URLs for the redirect delivery, signed with botocore's `S3SigV4QueryAuth` directly.

`client.generate_presigned_url` resolves endpoints and emits events on every call, which costs
about 2.5 times the signing itself; building the URL ourselves and reusing one signer per expiry
produces the same URL byte for byte (tests/test_presign.py compares them).

`Presigner.shared_url` hands out one URL per object, method and disposition per time window (a
quarter of the URL's life), signed as of the window's start: browsers and CDNs see the same URL and
can reuse what they fetched with it, and the gateway computes far fewer signatures.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import botocore.session
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from cachetools import LRUCache

from gateway.settings import ConfigError, S3Settings

__all__ = [
    "MAX_EXPIRES",
    "MissingCredentialsError",
    "Presigner",
    "SignedUrl",
    "content_disposition",
    "credentials_from_chain",
    "signing_window",
]

MAX_EXPIRES = 7 * 24 * 3600  # SigV4 query signatures cannot live longer than 7 days
_METHODS = frozenset({"GET", "HEAD"})
_DISPOSITIONS = frozenset({"inline", "attachment"})
_MAX_SIGNERS = 32  # expiries are a handful of policy values; the bound only guards against misuse
# A shared URL is handed out for a quarter of its life, so every answer carries one with more
# than three quarters of its life left.
REUSE_FRACTION: Final = 4
SHARED_URLS: Final = 10_000  # about 1 KB each; the hot objects of a busy site fit many times

# What cannot stand inside `filename="..."`: non-ASCII, controls and DEL, quote, backslash.
_NOT_QUOTABLE = re.compile(r'[^\x20-\x7e]|["\\]')
# RFC 5987 attr-char beyond the letters, digits and `-._~` that `quote` never escapes.
_ATTR_CHAR_EXTRA = "!#$&+^`|"
# A DNS label-compatible bucket, no dots: the only kind that works as a TLS virtual host.
_VIRTUAL_HOSTABLE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    expires_at: int  # epoch second after which S3 refuses the URL


def signing_window(expires: int, now: float) -> tuple[int, int]:
    """(signed_at, expires_at), in epoch seconds, of the shared URL handed out at `now`.

    Time is cut into windows of `expires // REUSE_FRACTION` seconds counted from the epoch, so every
    process and host signs the same instant for the same window. A URL living under
    REUSE_FRACTION seconds has no window to share and is signed at the current second.
    """
    window = expires // REUSE_FRACTION
    second = int(now)
    signed_at = second - second % window if window > 0 else second
    return signed_at, signed_at + expires


class _QueryAuth(S3SigV4QueryAuth):
    """botocore's S3 query signer, able to sign as of a given instant instead of its clock."""

    def add_auth_at(self, request: AWSRequest, timestamp: str) -> None:
        # SigV4Auth.add_auth with the timestamp given rather than read from get_current_datetime;
        # tests/test_presign.py checks the two sign byte for byte alike.
        # The stubs leave out botocore's private hooks, hence the ignores.
        request.context["timestamp"] = timestamp
        self._modify_request_before_signing(request)  # type: ignore[attr-defined]
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        signature = self.signature(string_to_sign, request)
        self._inject_signature_to_request(request, signature)  # type: ignore[attr-defined]


class MissingCredentialsError(ConfigError):
    """No S3 credentials: stop at start rather than answer every file request with a broken URL."""


def credentials_from_chain(region: str) -> Credentials:
    """Credentials from the standard AWS chain (env, profile, container or instance role).

    The object may be refreshable; `Presigner` re-reads it on every signing so rotation just works.
    botocore refreshes such credentials synchronously, inside the first signing after the advisory
    window opens (15 minutes before expiry), so that one request pays for an STS/IMDS call.
    """
    session = botocore.session.get_session()
    if region:
        session.set_config_variable("region", region)
    credentials = session.get_credentials()
    if credentials is None or not credentials.access_key:
        raise MissingCredentialsError(
            "s3: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with a container/instance role"
        )
    return credentials


def content_disposition(disposition: str, filename: str) -> str:
    """A Content-Disposition value every browser reads the same way.

    `filename="..."` carries an ASCII stand-in for old clients; `filename*` (RFC 6266/5987)
    carries the real name and wins where understood. It is also added for `%`, which some
    browsers percent-decode inside the plain parameter.
    """
    if disposition not in _DISPOSITIONS:
        raise ValueError(f"disposition must be 'inline' or 'attachment', got {disposition!r}")
    fallback = _NOT_QUOTABLE.sub("_", filename)
    if fallback == filename and "%" not in filename:
        return f'{disposition}; filename="{filename}"'
    encoded = quote(filename, safe=_ATTR_CHAR_EXTRA, encoding="utf-8", errors="replace")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


class Presigner:
    """Signs GET/HEAD URLs for objects in the configured bucket. Build once per process.

    Signers are cached per expiry and rebuilt when the credentials change (refresh or rotation).
    Each signing works from one frozen snapshot of the credentials, as botocore's own signer does,
    so a refresh between reading the access key and the secret can never mix two generations.
    """

    __slots__ = ("_base", "_credentials", "_frozen", "_region", "_shared", "_signers", "_ttl")

    def __init__(
        self, settings: S3Settings, credentials: Credentials, *, shared_urls: int = SHARED_URLS
    ) -> None:
        self._credentials = credentials
        self._region = settings.region
        self._ttl = settings.presign_ttl
        self._base = _base_url(settings)
        self._frozen: ReadOnlyCredentials | None = None
        self._signers: dict[int, _QueryAuth] = {}
        self._shared: LRUCache[tuple[str, str, str, str, str, int], SignedUrl] = LRUCache(max(shared_urls, 1))

    def presign(
        self,
        *,
        method: str,
        object_key: str,
        filename: str,
        content_type: str,
        disposition: str = "inline",
        expires: int | None = None,
        signed_at: int | None = None,
    ) -> str:
        """A URL that lets its holder `method` the object until it expires, and nothing else.

        The response headers are overridden through the signed `response-content-*` parameters so
        S3 answers with the record's name and type whatever metadata the upload carried. An empty
        `content_type` leaves S3's stored type in place. It is signed as of `signed_at` (epoch
        seconds) when given, else now by botocore's clock, and lives `expires` seconds from then.
        """
        if method not in _METHODS:
            raise ValueError(f"method must be GET or HEAD, got {method!r}")
        expires = self._ttl if expires is None else expires
        params = {"response-content-disposition": content_disposition(disposition, filename)}
        if content_type:
            params["response-content-type"] = content_type
        url = self._base + quote(object_key, safe="/~")
        request = AWSRequest(method=method, url=url, params=params)
        signer = self._signer(expires)
        if signed_at is None:
            signer.add_auth(request)
        else:
            signer.add_auth_at(request, time.strftime(SIGV4_TIMESTAMP, time.gmtime(signed_at)))
        # S3SigV4QueryAuth has moved `params` into the URL; prepare() is what botocore returns.
        return request.prepare().url

    def shared_url(
        self,
        *,
        method: str,
        object_key: str,
        filename: str,
        content_type: str,
        disposition: str = "inline",
        expires: int | None = None,
        now: float,
    ) -> SignedUrl:
        """The URL everyone asking for this object, method and disposition gets in the current
        window (see `signing_window`): signed once per window, then reused until the window ends.

        Bounded (least recently used go first) and emptied when the credentials change, so a URL
        is never reused after the credentials that signed it were refreshed or rotated.
        """
        expires = self._ttl if expires is None else expires
        self._current_credentials()
        signed_at, expires_at = signing_window(expires, now)
        key = (object_key, method, disposition, filename, content_type, expires)
        shared = self._shared.get(key)
        if shared is None or shared.expires_at != expires_at:
            url = self.presign(
                method=method, object_key=object_key, filename=filename, content_type=content_type,
                disposition=disposition, expires=expires, signed_at=signed_at,
            )  # fmt: skip
            shared = self._shared[key] = SignedUrl(url, expires_at)
        return shared

    def _current_credentials(self) -> ReadOnlyCredentials:
        # Cheap when nothing changed: refreshable credentials hand back the same frozen tuple.
        frozen = self._credentials.get_frozen_credentials()
        if frozen != self._frozen:
            if not frozen.access_key or not frozen.secret_key:
                raise MissingCredentialsError("s3: the AWS credentials lack a key or secret")
            self._frozen = frozen
            self._signers = {}
            self._shared.clear()
        return frozen

    def _signer(self, expires: int) -> _QueryAuth:
        if isinstance(expires, bool) or not 1 <= expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be 1..{MAX_EXPIRES} seconds, got {expires!r}")
        frozen = self._current_credentials()
        signer = self._signers.get(expires)
        if signer is None:
            if len(self._signers) >= _MAX_SIGNERS:
                self._signers = {}
            signer = _QueryAuth(frozen, "s3", self._region, expires=expires)
            self._signers[expires] = signer
        return signer


def _base_url(settings: S3Settings) -> str:
    """Everything before the quoted key, ending in `/`.

    A custom endpoint (MinIO, moto, Ceph...) gets path style, which every S3-compatible store
    serves without wildcard DNS. AWS gets the regional virtual host, or regional path style for
    bucket names that cannot be a TLS host name (dots, upper case), as botocore does.
    """
    bucket = quote(settings.bucket, safe="-._~")
    if settings.endpoint_url:
        return f"{settings.endpoint_url.rstrip('/')}/{bucket}/"
    suffix = "amazonaws.com.cn" if settings.region.startswith("cn-") else "amazonaws.com"
    if _VIRTUAL_HOSTABLE.fullmatch(settings.bucket):
        return f"https://{bucket}.s3.{settings.region}.{suffix}/"
    return f"https://s3.{settings.region}.{suffix}/{bucket}/"
