"""Sign-in as an OpenID Connect relying party (DESIGN 2.7): the steps of start, callback, sign-out
and back-channel logout, between the pure checks (gateway.oidc.flow), the provider's I/O
(gateway.oidc.provider), the IdP's rotating keys (gateway.jwks) and revocation
(gateway.oidc.revocation). HTTP itself stays in gateway.http.oauth2."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import jwt

from gateway.jwks import RemoteKey, RemoteKeySet
from gateway.oidc.flow import (
    Flow,
    SignInError,
    authorization_url,
    identity_claims,
    new_flow,
    open_flow,
    seal_flow,
    signature_algorithms,
    verify_id_token,
    verify_logout_token,
)
from gateway.oidc.provider import Provider, ProviderError
from gateway.oidc.revocation import RevokedSessions
from gateway.sessions import Session, mint_session, new_session
from gateway.settings import OidcSettings

log = logging.getLogger(__name__)

CALLBACK_PATH = "/oauth2/callback"
# Browsers drop cookies over 4096 bytes (name and attributes included) without a word, which would
# send the person round the sign-in loop for ever; such a session is refused instead.
MAX_SESSION_TOKEN: Final = 3800


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A finished sign-in: the session cookie's value and lifetime, where to go, and the ID token
    (kept only to name the session at the IdP's end_session_endpoint; never logged)."""

    session: Session
    token: str
    return_to: str


class SignIn:
    """Built once per process when `[oidc]` is set."""

    def __init__(
        self,
        settings: OidcSettings,
        keys: RemoteKeySet,
        revocations: RevokedSessions,
        *,
        leeway: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.provider = Provider(settings.issuer, settings.client_id, settings.client_secret.reveal())
        self.keys = keys  # the discovery document's jwks_uri; also verifies Bearer user tokens
        self.revocations = revocations
        self._leeway = leeway
        self._clock = clock

    async def prepare(self) -> None:
        """At start: discovery, then the IdP's keys. Failures are logged; sign-in retries later."""
        try:
            metadata = await self.provider.metadata()
        except ProviderError:
            return
        self.keys.url = metadata.jwks_uri
        await self.keys.refresh()

    async def start(self, return_to: str | None, redirect_uri: str) -> tuple[str, Flow, str]:
        """(authorization URL, the flow, its sealed cookie value). Raises ProviderError."""
        metadata = await self.provider.metadata()
        self.keys.url = metadata.jwks_uri
        flow = new_flow(return_to, redirect_uri)
        sealed = seal_flow(flow, self.settings.session_secrets[0], self._clock())
        url = authorization_url(
            metadata.authorization_endpoint, self.settings.client_id, self.settings.scopes, flow
        )
        return url, flow, sealed

    def open_flow(self, sealed: str, state: str) -> Flow:
        return open_flow(sealed, state, self.settings.session_secrets, self._clock())

    async def finish(self, flow: Flow, code: str) -> SignedIn:
        """Exchange the code, verify the ID token, read org/groups, and make the session."""
        metadata = await self.provider.metadata()
        answer = await self.provider.exchange_code(code, flow.redirect_uri, flow.verifier)
        id_token = answer["id_token"]
        claims = verify_id_token(
            id_token, keys=await self._key_lookup(id_token),
            algorithms=signature_algorithms(metadata.id_token_algs), issuer=metadata.issuer,
            client_id=self.settings.client_id, nonce=flow.nonce, now=self._clock(), leeway=self._leeway,
        )  # fmt: skip
        org_claim, groups_claim = self.settings.org_claim, self.settings.groups_claim
        facts = claims
        access_token = answer.get("access_token")
        if (org_claim not in claims or groups_claim not in claims) and isinstance(access_token, str):
            info = await self.provider.userinfo(access_token)
            if info and info.get("sub") != claims["sub"]:
                raise SignInError("userinfo_subject_mismatch")  # OIDC Core 5.3.2
            facts = {**info, **claims}  # what the signed ID token says wins
        org, groups = identity_claims(facts, org_claim, groups_claim)
        session = new_session(claims["sub"], org, groups, self._clock(), self.settings.session_ttl)
        idp_sid = claims.get("sid")
        if isinstance(idp_sid, str) and 0 < len(idp_sid) <= 256:
            # The IdP's session id, so its back-channel logout names this session directly.
            session = Session(session.sub, org, groups, idp_sid, session.issued_at, session.expires_at)
        token = mint_session(session, self.settings.session_secrets[0])
        if len(token) > MAX_SESSION_TOKEN:
            raise SignInError("session_too_large")  # far too many groups for a cookie
        return SignedIn(session, token, flow.return_to)

    async def _key_lookup(self, token: str) -> Callable[[str | None], RemoteKey | None]:
        """The IdP's keys, fetched again (at most once per 30 s) when the token names a new one."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            kid = None
        if isinstance(kid, str) and not self.keys.knows(kid):
            await self.keys.refresh_for_unknown(kid)
        return self.keys.get

    def end_session_url(self, id_token_hint: str | None, post_logout_redirect_uri: str | None) -> str | None:
        metadata = self.provider.known_metadata
        if metadata is None or metadata.end_session_endpoint is None:
            return None
        params = {"client_id": self.settings.client_id}
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        if post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = post_logout_redirect_uri
        endpoint = metadata.end_session_endpoint
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    async def backchannel_logout(self, logout_token: str) -> tuple[str | None, str | None]:
        """Verify a logout token and revoke what it names everywhere; (sid, sub) for the log."""
        metadata = await self.provider.metadata()
        sid, sub = verify_logout_token(
            logout_token, keys=await self._key_lookup(logout_token),
            algorithms=signature_algorithms(metadata.id_token_algs), issuer=metadata.issuer,
            client_id=self.settings.client_id, now=self._clock(), leeway=self._leeway,
        )  # fmt: skip
        if sid is not None:
            await self.revocations.revoke(sid=sid)
        else:
            await self.revocations.revoke(sub=sub)
        return sid, sub
