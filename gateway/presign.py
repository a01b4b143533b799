"""S3 presigned URLs for the redirect delivery, signed with botocore's `S3SigV4QueryAuth` directly.

`client.generate_presigned_url` resolves endpoints and emits events on every call, which costs
about 2.5 times the signing itself; building the URL ourselves and reusing one signer per expiry
produces the same URL byte for byte (tests/test_presign.py compares them).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import botocore.session
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from gateway.settings import ConfigError, S3Settings

__all__ = [
    "MAX_EXPIRES",
    "MissingCredentialsError",
    "Presigner",
    "content_disposition",
    "credentials_from_chain",
]

MAX_EXPIRES = 7 * 24 * 3600  # SigV4 query signatures cannot live longer than 7 days
_METHODS = frozenset({"GET", "HEAD"})
_DISPOSITIONS = frozenset({"inline", "attachment"})
_MAX_SIGNERS = 32  # expiries are a handful of policy values; the bound only guards against misuse

# What cannot stand inside `filename="..."`: non-ASCII, controls and DEL, quote, backslash.
_NOT_QUOTABLE = re.compile(r'[^\x20-\x7e]|["\\]')
# RFC 5987 attr-char beyond the letters, digits and `-._~` that `quote` never escapes.
_ATTR_CHAR_EXTRA = "!#$&+^`|"
# A DNS label-compatible bucket, no dots: the only kind that works as a TLS virtual host.
_VIRTUAL_HOSTABLE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


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

    __slots__ = ("_base", "_credentials", "_frozen", "_region", "_signers", "_ttl")

    def __init__(self, settings: S3Settings, credentials: Credentials) -> None:
        self._credentials = credentials
        self._region = settings.region
        self._ttl = settings.presign_ttl
        self._base = _base_url(settings)
        self._frozen: ReadOnlyCredentials | None = None
        self._signers: dict[int, S3SigV4QueryAuth] = {}

    @property
    def default_expires(self) -> int:
        """The configured `s3.presign_ttl`, so callers can keep Cache-Control within it."""
        return self._ttl

    def presign(
        self,
        *,
        method: str,
        object_key: str,
        filename: str,
        content_type: str,
        disposition: str = "inline",
        expires: int | None = None,
    ) -> str:
        """A URL that lets its holder `method` the object until it expires, and nothing else.

        The response headers are overridden through the signed `response-content-*` parameters so
        S3 answers with the record's name and type whatever metadata the upload carried. An empty
        `content_type` leaves S3's stored type in place.
        """
        if method not in _METHODS:
            raise ValueError(f"method must be GET or HEAD, got {method!r}")
        expires = self._ttl if expires is None else expires
        params = {"response-content-disposition": content_disposition(disposition, filename)}
        if content_type:
            params["response-content-type"] = content_type
        url = self._base + quote(object_key, safe="/~")
        request = AWSRequest(method=method, url=url, params=params)
        self._signer(expires).add_auth(request)
        # S3SigV4QueryAuth has moved `params` into the URL; prepare() is what botocore returns.
        return request.prepare().url

    def _signer(self, expires: int) -> S3SigV4QueryAuth:
        if isinstance(expires, bool) or not 1 <= expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be 1..{MAX_EXPIRES} seconds, got {expires!r}")
        # Cheap when nothing changed: refreshable credentials hand back the same frozen tuple.
        frozen = self._credentials.get_frozen_credentials()
        if frozen != self._frozen:
            if not frozen.access_key or not frozen.secret_key:
                raise MissingCredentialsError("s3: the AWS credentials lack a key or secret")
            self._frozen = frozen
            self._signers = {}
        signer = self._signers.get(expires)
        if signer is None:
            if len(self._signers) >= _MAX_SIGNERS:
                self._signers = {}
            signer = S3SigV4QueryAuth(frozen, "s3", self._region, expires=expires)
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
