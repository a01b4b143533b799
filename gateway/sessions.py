"""The gateway's own session token: what the session cookie holds after a sign-in (DESIGN 2.7).

An HS256 JWT signed with the first of `oidc.session_secrets`; every secret in the list verifies,
so a secret is rotated by putting the new one first and dropping the old one a session lifetime
later. Each secret has its own `kid` (a digest, never the secret), so verification picks the right
one at once. The issuer and audience are the gateway's own, so no IdP token can pass for a session
and no session token for an IdP token. Verification lives in `gateway.tokens` with every other token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import jwt

from gateway.settings import Secret

SESSION_ISSUER: Final = "asset-gateway"
SESSION_AUDIENCE: Final = "asset-gateway:session"
SESSION_ALG: Final = "HS256"


def session_kid(secret: Secret) -> str:
    """A public name for a session secret: enough to pick it, useless to recover it."""
    digest = hashlib.sha256(b"asset-gateway session key\x00" + secret.reveal().encode()).hexdigest()
    return f"session-{digest[:16]}"


@dataclass(frozen=True, slots=True)
class Session:
    """Who signed in, until when. `sid` names this session for sign-out and back-channel logout."""

    sub: str
    org: str | None
    groups: tuple[str, ...]
    sid: str
    issued_at: int
    expires_at: int


def new_session(sub: str, org: str | None, groups: Iterable[str], now: float, ttl: int) -> Session:
    issued = int(now)
    return Session(sub, org, tuple(groups), secrets.token_urlsafe(18), issued, issued + ttl)


def mint_session(session: Session, signing_secret: Secret) -> str:
    claims: dict[str, object] = {
        "iss": SESSION_ISSUER,
        "aud": SESSION_AUDIENCE,
        "sub": session.sub,
        "sid": session.sid,
        "iat": session.issued_at,
        "exp": session.expires_at,
        "groups": list(session.groups),
    }
    if session.org is not None:
        claims["org"] = session.org
    return jwt.encode(
        claims,
        signing_secret.reveal().encode(),
        algorithm=SESSION_ALG,
        headers={"kid": session_kid(signing_secret)},
    )
