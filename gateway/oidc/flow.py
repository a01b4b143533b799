"""The relying party's decisions, pure: where a browser may be sent back to, what the short-lived
flow cookie binds (state, nonce, PKCE verifier, return path), the authorization request, and the
checks an ID token or a back-channel logout token must pass. No I/O: keys, metadata and the time
are arguments, so every refusal is testable without an identity provider."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlencode

import jwt

from gateway.jwks import ASYMMETRIC, RemoteKey
from gateway.sessions import SESSION_ISSUER
from gateway.settings import Secret

FLOW_COOKIE_PREFIX: Final = "oauth2_flow_"
FLOW_TTL: Final = 600  # seconds a browser has to come back from the IdP
FLOW_AUDIENCE: Final = "asset-gateway:oauth2-flow"
MAX_FLOW_COOKIES: Final = 4  # pending sign-ins kept per browser (tabs); past that, others are dropped
MAX_RETURN_TO: Final = 2048
BACKCHANNEL_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
STATE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{32,64}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


class SignInError(Exception):
    """A sign-in or logout step refused; `code` is for the log, the browser gets a bare status."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def safe_return_to(value: str | None) -> str:
    """A path on this host, else `/`. Refuses anything a browser could read as another origin or
    scheme: absolute URLs, `//host`, backslashes (`/\\host`), encoded slashes or backslashes,
    control characters, and anything that is not a plain path starting with one `/`."""
    if not value or len(value) > MAX_RETURN_TO or not value.isascii():
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value or _CONTROL.search(value):
        return "/"
    decoded = value
    for _ in range(3):  # doubly encoded tricks decode again somewhere down the line
        decoded = unquote(decoded)
    path = decoded.split("?", 1)[0].split("#", 1)[0]
    if path.startswith("//") or "\\" in decoded or _CONTROL.search(decoded) or "://" in path:
        return "/"
    if re.search(r"%(2f|5c)", value.split("?", 1)[0], re.IGNORECASE):
        return "/"  # an encoded slash in the path: /%2f%2fevil.example
    return value


@dataclass(frozen=True, slots=True)
class Flow:
    """One sign-in in progress, carried by the browser in a signed, HttpOnly cookie."""

    state: str
    nonce: str
    verifier: str  # PKCE code_verifier
    return_to: str
    redirect_uri: str

    @property
    def cookie_name(self) -> str:
        return FLOW_COOKIE_PREFIX + self.state

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_flow(return_to: str | None, redirect_uri: str) -> Flow:
    return Flow(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(48),  # 64 characters: within RFC 7636's 43-128
        return_to=safe_return_to(return_to),
        redirect_uri=redirect_uri,
    )


def seal_flow(flow: Flow, secret: Secret, now: float) -> str:
    claims = {
        "iss": SESSION_ISSUER, "aud": FLOW_AUDIENCE, "iat": int(now), "exp": int(now) + FLOW_TTL,
        "state": flow.state, "nonce": flow.nonce, "verifier": flow.verifier,
        "return_to": flow.return_to, "redirect_uri": flow.redirect_uri,
    }  # fmt: skip
    return jwt.encode(claims, secret.reveal().encode(), algorithm="HS256")


def open_flow(sealed: str, state: str, secrets_: Sequence[Secret], now: float) -> Flow:
    """The flow a cookie carries, if any session secret signed it, it has not expired and it is
    the one `state` names. Raises SignInError otherwise."""
    for secret in secrets_:
        try:
            claims = jwt.decode(
                sealed, secret.reveal().encode(), algorithms=["HS256"], audience=FLOW_AUDIENCE,
                issuer=SESSION_ISSUER, options={"verify_exp": False, "require": ["exp", "state"]},
            )  # fmt: skip
        except jwt.PyJWTError:
            continue
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            raise SignInError("flow_expired")
        fields = ("state", "nonce", "verifier", "return_to", "redirect_uri")
        if not all(isinstance(claims.get(name), str) for name in fields):
            raise SignInError("flow_malformed")
        if not hmac.compare_digest(claims["state"], state):
            raise SignInError("state_mismatch")
        return Flow(*(claims[name] for name in fields))
    raise SignInError("flow_signature")


def authorization_url(
    endpoint: str, client_id: str, scopes: Sequence[str], flow: Flow, extra: dict[str, str] | None = None
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": flow.redirect_uri,
        "scope": " ".join(scopes),
        "state": flow.state,
        "nonce": flow.nonce,
        "code_challenge": flow.challenge,
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    separator = "&" if "?" in endpoint else "?"
    return endpoint + separator + urlencode(params)


def signature_algorithms(advertised: object) -> frozenset[str]:
    """What the IdP says it signs ID tokens with, minus anything that is not a public-key
    signature (never `none`, never HMAC with a key the world can read). RS256 when silent."""
    if not isinstance(advertised, list):
        return frozenset({"RS256"})
    return frozenset(a for a in advertised if isinstance(a, str)) & ASYMMETRIC


KeyLookup = Callable[[str | None], RemoteKey | None]


def _verified_claims(
    token: str, keys: KeyLookup, algorithms: frozenset[str], issuer: str, client_id: str, leeway: float,
    now: float,
) -> dict[str, Any]:  # fmt: skip
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SignInError("token_malformed") from None
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise SignInError("token_malformed")
    key = keys(kid)
    if key is None:
        raise SignInError("unknown_key")
    if header.get("alg") != key.alg or key.alg not in algorithms:
        raise SignInError("algorithm_refused")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=[key.alg], audience=client_id, issuer=issuer, leeway=leeway,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                     "require": ["iss", "aud", "iat"]},
        )  # fmt: skip
    except jwt.InvalidAudienceError:
        raise SignInError("wrong_audience") from None
    except jwt.InvalidIssuerError:
        raise SignInError("wrong_issuer") from None
    except jwt.PyJWTError:
        raise SignInError("token_invalid") from None
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise SignInError("wrong_audience")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or iat > now + leeway:
        raise SignInError("token_not_yet_valid")
    return claims


def verify_id_token(
    token: str,
    *,
    keys: KeyLookup,
    algorithms: frozenset[str],
    issuer: str,
    client_id: str,
    nonce: str,
    now: float,
    leeway: float = 30,
) -> dict[str, Any]:
    """The claims of an ID token that passes OIDC Core 3.1.3.7, else SignInError."""
    claims = _verified_claims(token, keys, algorithms, issuer, client_id, leeway, now)
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp < now - leeway:
        raise SignInError("token_expired")
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
        raise SignInError("nonce_mismatch")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise SignInError("no_subject")
    return claims


def verify_logout_token(
    token: str,
    *,
    keys: KeyLookup,
    algorithms: frozenset[str],
    issuer: str,
    client_id: str,
    now: float,
    leeway: float = 30,
    max_age: float = 600,
) -> tuple[str | None, str | None]:
    """(sid, sub) named by a Back-Channel Logout 1.0 logout token (section 2.6), else SignInError."""
    claims = _verified_claims(token, keys, algorithms, issuer, client_id, leeway, now)
    if claims["iat"] < now - max_age - leeway:
        raise SignInError("token_stale")
    exp = claims.get("exp")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float) or exp < now - leeway):
        raise SignInError("token_expired")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise SignInError("not_a_logout_token")
    if "nonce" in claims:
        raise SignInError("logout_token_with_nonce")
    if not isinstance(claims.get("jti"), str):
        raise SignInError("no_jti")
    sid, sub = claims.get("sid"), claims.get("sub")
    sid = sid if isinstance(sid, str) and sid else None
    sub = sub if isinstance(sub, str) and sub else None
    if sid is None and sub is None:
        raise SignInError("no_sid_or_sub")
    return sid, sub


def identity_claims(
    claims: dict[str, Any], org_claim: str, groups_claim: str
) -> tuple[str | None, tuple[str, ...]]:
    """(org, groups) from ID token or userinfo claims; a malformed value counts as absent."""
    org = claims.get(org_claim)
    groups = claims.get(groups_claim)
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        groups = []
    return (
        org if isinstance(org, str) and org else None,
        tuple(g for g in groups if isinstance(g, str) and g)[:256],
    )
