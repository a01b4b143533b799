"""Talking to the OpenID provider: discovery (cached), the code exchange and userinfo. All I/O of
sign-in is here, with timeouts and size limits; answers are checked before anything is believed."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp

from gateway.background import SingleFlight
from gateway.jwks import read_at_most

log = logging.getLogger(__name__)

TIMEOUT: Final = aiohttp.ClientTimeout(total=10, connect=5)
MAX_BODY: Final = 256 * 1024
DISCOVERY_TTL: Final = 3600.0  # seconds a discovery document is trusted before it is fetched again
DISCOVERY_RETRY: Final = 10.0  # seconds between attempts while the provider cannot be reached


class ProviderError(Exception):
    """The provider could not be reached or gave an answer we do not accept; `code` for the log."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What discovery tells us, checked: the issuer is the configured one, endpoints are URLs."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    id_token_algs: object  # id_token_signing_alg_values_supported, as advertised
    token_auth_methods: tuple[str, ...]


def parse_metadata(document: dict[str, Any], issuer: str) -> ProviderMetadata:
    """OIDC Discovery 1.0 section 4.3: the document's issuer must equal the one we asked."""
    if document.get("issuer") != issuer:
        raise ProviderError("issuer_mismatch")

    def url(name: str, required: bool = True) -> str | None:
        value = document.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or urlsplit(value).scheme not in ("https", "http"):
            raise ProviderError(f"bad_{name}")
        return value

    methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if not isinstance(methods, list):
        methods = ["client_secret_basic"]
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=str(url("authorization_endpoint")),
        token_endpoint=str(url("token_endpoint")),
        jwks_uri=str(url("jwks_uri")),
        userinfo_endpoint=url("userinfo_endpoint", required=False),
        end_session_endpoint=url("end_session_endpoint", required=False),
        id_token_algs=document.get("id_token_signing_alg_values_supported"),
        token_auth_methods=tuple(m for m in methods if isinstance(m, str)),
    )


class Provider:
    """One configured provider. `session` is opened and closed with the app (gateway.app)."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self.session: aiohttp.ClientSession | None = None
        self._metadata: ProviderMetadata | None = None
        self._fetched_at = -float("inf")
        self._failed_at = -float("inf")
        self._discovery = SingleFlight(self._discover, name="oidc-discovery")

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(timeout=TIMEOUT)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    @property
    def known_metadata(self) -> ProviderMetadata | None:
        return self._metadata

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, from memory while fresh; concurrent callers share one fetch.
        A failed refresh keeps the last good document; with none, raises ProviderError."""
        now = self._clock()
        if self._metadata is not None and now - self._fetched_at < DISCOVERY_TTL:
            return self._metadata
        recently_failed = self._metadata is None and now - self._failed_at < DISCOVERY_RETRY
        if recently_failed and not self._discovery.running:
            raise ProviderError("discovery_unavailable")
        return await self._discovery.run()

    async def _discover(self) -> ProviderMetadata:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            metadata = parse_metadata(await self._get_json(url), self.issuer)
        except ProviderError as exc:
            self._failed_at = self._clock()
            if self._metadata is not None:
                log.warning("discovery at %s failed (%s); keeping the last document", url, exc.code)
                self._fetched_at = self._clock() - DISCOVERY_TTL + DISCOVERY_RETRY
                return self._metadata
            log.warning("discovery at %s failed (%s)", url, exc.code)
            raise
        self._metadata = metadata
        self._fetched_at = self._clock()
        return metadata

    async def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """The token response for an authorization code, authenticated as the provider advertises
        (client_secret_basic unless only client_secret_post is offered)."""
        metadata = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}  # fmt: skip
        headers = {"Accept": "application/json"}
        methods = metadata.token_auth_methods
        if "client_secret_basic" not in methods and "client_secret_post" in methods:
            form.update(client_id=self._client_id, client_secret=self._client_secret)
        else:
            # RFC 6749 2.3.1: each part form-encoded before it is joined and base64-encoded.
            pair = f"{quote(self._client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        answer = await self._send("POST", metadata.token_endpoint, data=form, headers=headers)
        if not isinstance(answer.get("id_token"), str):
            raise ProviderError("no_id_token")
        return answer

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        metadata = await self.metadata()
        if metadata.userinfo_endpoint is None:
            return {}
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        return await self._send("GET", metadata.userinfo_endpoint, headers=headers)

    async def _get_json(self, url: str) -> dict[str, Any]:
        return await self._send("GET", url, headers={"Accept": "application/json"})

    async def _send(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if self.session is None:
            raise ProviderError("not_started")
        try:
            async with self.session.request(method, url, allow_redirects=False, **kwargs) as response:
                body = await read_at_most(response.content, MAX_BODY)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"unreachable_{type(exc).__name__}") from None
        if body is None:
            raise ProviderError("answer_too_large")
        if status != 200:
            raise ProviderError(f"http_{status}")
        try:
            document = json.loads(body)
        except ValueError:
            raise ProviderError("not_json") from None
        if not isinstance(document, dict):
            raise ProviderError("not_json_object")
        return document
