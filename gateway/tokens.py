"""User and preview tokens (DESIGN 2.3): verification for every request, minting for
`asset-gateway token mint`.

Pure and synchronous: keys are loaded once at start, the current time is an argument, nothing here
does I/O. Every way a token can be wrong ends in `None` ("no token") rather than an exception, so a
hostile token can never turn into a 500, and token text never goes into a message or a log line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import jwt
from cachetools import LRUCache
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import Algorithm, get_default_algorithms
from jwt.types import Options

from gateway.jwks import RemoteKeySet
from gateway.models import PreviewIdentity, UserIdentity
from gateway.sessions import SESSION_ALG, SESSION_AUDIENCE, SESSION_ISSUER, session_kid
from gateway.settings import Secret, TokenKey, TokensSettings

__all__ = ["MAX_TOKEN_BYTES", "REJECTION_REASONS", "Rejection", "TokenVerifier", "check_keys", "mint_token"]

# Real tokens are well under 2 KB; the limit keeps parsing and the cache cheap under abuse.
MAX_TOKEN_BYTES: Final = 8192

_USES: Final = ("user", "preview")

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_PRIVATE_TYPES: Final = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
_PUBLIC_TYPES: Final = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)

Identity: TypeAlias = UserIdentity | PreviewIdentity

# Why a token was refused: a closed set, so it can be a metric label, a log field and an `explain`
# line without ever carrying anything of the token itself. `revoked` is for signed-in sessions.
REJECTION_REASONS: Final = (
    "expired",
    "not_yet_valid",
    "bad_signature",
    "unknown_kid",
    "alg_not_allowed",
    "wrong_issuer",
    "wrong_audience",
    "malformed",
    "too_large",
    "revoked",
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused token: `reason` is one of REJECTION_REASONS."""

    reason: str


_EXPIRED: Final = Rejection("expired")
_NOT_YET_VALID: Final = Rejection("not_yet_valid")
_MALFORMED: Final = Rejection("malformed")
_TOO_LARGE: Final = Rejection("too_large")
_UNKNOWN_KID: Final = Rejection("unknown_kid")
_ALG_NOT_ALLOWED: Final = Rejection("alg_not_allowed")
_BAD_SIGNATURE: Final = Rejection("bad_signature")
_REVOKED: Final = Rejection("revoked")


@dataclass(frozen=True, slots=True)
class _Key:
    """One loaded verification key; `alg` is the only algorithm it will ever verify."""

    use: str
    alg: str
    kid: str | None
    key: bytes | PublicKey
    session: bool = False  # the gateway's own session token: its issuer and audience, and a sid


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The outcome of checking a token's signature and claims, valid for any `now`.

    Only the time window depends on the clock, so one verdict answers every later request for the
    same token: inside [valid_from, valid_until] it is the identity, outside it is a rejection.
    """

    identity: Identity | Rejection
    valid_from: float = -math.inf
    valid_until: float = math.inf

    def at(self, now: float) -> Identity | Rejection:
        if isinstance(self.identity, Rejection):
            return self.identity
        if now < self.valid_from:
            return _NOT_YET_VALID
        if now > self.valid_until:
            return _EXPIRED
        return self.identity


_REJECTED: Final = _Verdict(_MALFORMED)  # signed with a known key, but claims of the wrong shape


class TokenVerifier:
    """Verifies user and preview tokens against the configured keys, caching verdicts.

    Built once per process from settings. Not thread-safe (the cache is a plain LRU); the gateway
    uses it from a single event loop. `remote` are user key sets fetched at run time (read from
    memory here); `session_secrets` verify the gateway's own session tokens, which count as user
    tokens, and `revoked` says whether such a session was revoked since (checked on every use, so
    a cached verdict never outlives a sign-out).
    """

    def __init__(
        self,
        settings: TokensSettings,
        cache_size: int = 10_000,
        *,
        remote: Sequence[RemoteKeySet] = (),
        session_secrets: Sequence[Secret] = (),
        revoked: Callable[[UserIdentity], bool] | None = None,
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size: expected 0 or more")
        self._leeway = float(settings.leeway)
        self._issuer = settings.issuer or None
        self._audience = settings.audience or None
        # exp/nbf/iat are checked here against the `now` argument: PyJWT would use the real clock.
        # iss/aud name the identity provider, so they apply to user tokens only (DESIGN 2.3);
        # preview links are minted by the publishing system with a shared secret.
        self._user_options: Options = {
            "verify_signature": True,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_iss": self._issuer is not None,
            "verify_aud": self._audience is not None,
            "verify_sub": True,
            "verify_jti": True,
            "require": ["exp", "sub"],
            "enforce_minimum_key_length": True,
        }
        self._preview_options: Options = {**self._user_options, "verify_iss": False, "verify_aud": False}
        self._session_options: Options = {
            **self._user_options,
            "verify_iss": True,
            "verify_aud": True,
            "require": ["exp", "sub", "sid", "iat"],
        }
        self._remote = tuple(remote)
        self._revoked = revoked
        self._with_kid: dict[tuple[str, str], list[_Key]] = {}
        self._without_kid: dict[str, list[_Key]] = {use: [] for use in _USES}
        for index, token_key in enumerate(settings.keys):
            for loaded in _load_key(token_key, f"tokens.keys[{index}]"):
                if loaded.kid is None:
                    self._without_kid.setdefault(loaded.use, []).append(loaded)
                else:
                    self._with_kid.setdefault((loaded.use, loaded.kid), []).append(loaded)
        for secret in session_secrets:
            prepared = get_default_algorithms()[SESSION_ALG].prepare_key(secret.reveal().encode())
            kid = session_kid(secret)
            self._with_kid.setdefault(("user", kid), []).append(
                _Key("user", SESSION_ALG, kid, prepared, session=True)
            )
        self._cache_size = cache_size
        # Keyed by a digest, not the token: 32 bytes per entry instead of up to 8 KB.
        self._cache: LRUCache[tuple[str, bytes], _Verdict] = LRUCache(maxsize=max(cache_size, 1))
        self.verifications = 0  # signature checks actually run (cache misses), for tests/metrics

    def verify_user(self, token: str, now: float) -> UserIdentity | None:
        """The identity in a valid user token (or session that was not revoked), else None."""
        identity = self.check("user", token, now)
        return identity if isinstance(identity, UserIdentity) else None

    @property
    def remote_key_sets(self) -> tuple[RemoteKeySet, ...]:
        return self._remote

    def revoked(self, identity: UserIdentity) -> bool:
        """Whether this session was revoked (sign-out or back-channel logout) since it was made."""
        return identity.sid is not None and self._revoked is not None and self._revoked(identity)

    def unknown_remote_kid(self, token: str) -> tuple[RemoteKeySet, str | None] | None:
        """The fetched key set that could learn the key `token` names, when no key we hold matches
        it: the caller may refresh that set (gateway.jwks rate-limits it) and verify again."""
        if not self._remote or len(token) > MAX_TOKEN_BYTES:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        if (kid is not None and not isinstance(kid, str)) or str(header.get("alg", "")).startswith("HS"):
            return None
        if self._with_kid.get(("user", kid or "")) or any(source.knows(kid) for source in self._remote):
            return None
        return next(((s, kid) for s in self._remote if s.miss_refresh_due()), None)

    def verify_preview(self, token: str, now: float) -> PreviewIdentity | None:
        """The identity in a valid preview token, else None."""
        identity = self.check("preview", token, now)
        return identity if isinstance(identity, PreviewIdentity) else None

    def check(self, use: str, token: str, now: float) -> Identity | Rejection:
        """The identity in a valid `use` ("user" or "preview") token, else why it was refused. A
        session is asked about revocation every time: that is not part of the cached verdict."""
        try:
            checked = self._verify_or_raise(use, token, now)
        except Exception:
            # Whatever went wrong, the caller sees a refusal, never an error carrying the token.
            # A last guard, kept broad on purpose: every failure PyJWT and cryptography were seen
            # to raise on hostile tokens (bad base64, non-UTF-8 or deeply nested JSON, signatures
            # of any length, exp/nbf/iat of 1e400 or NaN) is a PyJWTError handled in _check, so no
            # known input reaches this line; narrowing it would only turn the next parser bug
            # into a 500.
            return _MALFORMED
        if isinstance(checked, UserIdentity) and self.revoked(checked):
            return _REVOKED
        return checked

    def _verify_or_raise(self, use: str, token: str, now: float) -> Identity | Rejection:
        if not isinstance(token, str):
            return _MALFORMED
        if len(token) > MAX_TOKEN_BYTES:
            return _TOO_LARGE  # checked before anything else reads the whole token
        if not token.isascii():
            return _MALFORMED  # so from here on characters are bytes
        cache_key = (use, hashlib.sha256(token.encode("ascii")).digest())
        verdict = self._cache.get(cache_key) if self._cache_size else None
        if verdict is None:
            checked = self._check(use, token)
            if isinstance(checked, Rejection):
                return checked  # refused before any signature check: cheap, not worth a cache slot
            verdict = checked
            if self._cache_size:
                self._cache[cache_key] = verdict
        return verdict.at(now)

    def _check(self, use: str, token: str) -> _Verdict | Rejection:
        """Signature and claims, independent of the clock; a Rejection when no key could be tried."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return _MALFORMED
        alg = header.get("alg")
        if not isinstance(alg, str):
            return _MALFORMED
        if alg.lower() == "none":
            return _ALG_NOT_ALLOWED
        kid = header.get("kid")
        if kid is None:
            candidates = self._without_kid.get(use, [])
        elif isinstance(kid, str):
            candidates = self._with_kid.get((use, kid), [])  # an unknown kid finds nothing
        else:
            return _MALFORMED
        if not candidates and use == "user":
            candidates = self._remote_candidates(kid)
        if not candidates:
            return _UNKNOWN_KID
        if all(key.alg != alg for key in candidates):
            return _ALG_NOT_ALLOWED  # pinned by configuration: the header may not choose
        refusal = _BAD_SIGNATURE
        for key in candidates:
            if key.alg != alg:
                continue
            self.verifications += 1
            try:
                if key.session:
                    claims = jwt.decode(
                        token, key.key, algorithms=[key.alg], options=self._session_options,
                        issuer=SESSION_ISSUER, audience=SESSION_AUDIENCE,
                    )  # fmt: skip
                else:
                    claims = jwt.decode(
                        token,
                        key.key,
                        algorithms=[key.alg],  # pinned by configuration, never read from the header
                        options=self._user_options if use == "user" else self._preview_options,
                        issuer=self._issuer if use == "user" else None,
                        audience=self._audience if use == "user" else None,
                    )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                # PyJWT checks claims only after the signature: this key signed it, the claims are wrong.
                refusal = _claims_refusal(exc)
                continue
            return self._verdict(use, claims, session=key.session)
        return _Verdict(refusal)

    def _remote_candidates(self, kid: str | None) -> list[_Key]:
        """Keys fetched at run time (gateway.jwks), each pinned to the algorithm its JWK names."""
        found = []
        for source in self._remote:
            remote = source.get(kid)
            if remote is not None:
                found.append(_Key("user", remote.alg, remote.kid, remote.key))
        return found

    def _verdict(self, use: str, claims: dict[str, Any], *, session: bool = False) -> _Verdict:
        exp = _number(claims.get("exp"))
        if exp is None:
            return _REJECTED
        valid_from = -math.inf
        for name in ("nbf", "iat"):
            if name in claims:
                value = _number(claims[name])
                if value is None:
                    return _REJECTED
                valid_from = max(valid_from, value)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            return _REJECTED
        identity: Identity
        if use == "user":
            org = claims.get("org")
            groups = claims.get("groups")
            if org is not None and not isinstance(org, str):
                return _REJECTED
            if groups is None:
                groups = []
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                return _REJECTED
            sid = claims.get("sid") if session else None
            if session and (not isinstance(sid, str) or not sid):
                return _REJECTED
            identity = UserIdentity(
                sub=sub,
                org=org or None,
                groups=frozenset(g for g in groups if g),
                expires_at=exp,
                valid_until=exp + self._leeway,
                sid=sid,
                issued_at=_number(claims.get("iat")) if session else None,
            )
        else:
            identity = PreviewIdentity(
                sub=sub,
                draft_asset_manager_access=claims.get("draft_asset_manager_access") is True,
                expires_at=exp,
                valid_until=exp + self._leeway,
            )
        return _Verdict(identity, valid_from - self._leeway, identity.valid_until)


def check_keys(settings: TokensSettings) -> None:
    """Load every configured key as the gateway would: raises ValueError naming the first unusable
    one (an algorithm that does not fit its PEM, a weak secret...). Every command runs this."""
    for index, token_key in enumerate(settings.keys):
        _load_key(token_key, f"tokens.keys[{index}]")


def _claims_refusal(error: jwt.PyJWTError) -> Rejection:
    missing = error.claim if isinstance(error, jwt.MissingRequiredClaimError) else None
    if isinstance(error, jwt.InvalidIssuerError) or missing == "iss":
        return Rejection("wrong_issuer")
    if isinstance(error, jwt.InvalidAudienceError) or missing == "aud":
        return Rejection("wrong_audience")
    if isinstance(error, jwt.InvalidAlgorithmError):
        return _ALG_NOT_ALLOWED
    return _MALFORMED


def new_rsa_pem_pair() -> tuple[str, str]:
    """A fresh 2048-bit RSA key as (private PKCS#8 PEM, public PEM), for demos and tests that
    play the identity provider."""
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def mint_token(key: TokenKey, claims: dict[str, Any], private_key_pem: str | None = None) -> str:
    """Sign `claims` with a configured key: its HS secret, or `private_key_pem` for RS/ES/PS/EdDSA.

    For development and ops checks; the gateway itself only verifies. `kid` goes in the header when
    the key has one, so the token selects the same key when it comes back.
    """
    algorithm = _algorithm(key, "key")
    if key.alg.startswith("HS"):
        if key.secret is None or not key.secret:
            raise ValueError(f"key: {key.alg} needs a secret to sign with")
        signing_key: Any = algorithm.prepare_key(key.secret.reveal().encode("utf-8"))
    else:
        if private_key_pem is None:
            raise ValueError(f"private_key_pem: {key.alg} tokens are signed with a private key")
        try:
            signing_key = algorithm.prepare_key(private_key_pem)
        except Exception:
            signing_key = None
        if not isinstance(signing_key, _PRIVATE_TYPES):
            raise ValueError(f"private_key_pem: expected a PEM private key usable with {key.alg}")
    weakness = algorithm.check_key_length(signing_key)
    if weakness:
        raise ValueError(f"key: {weakness}")
    headers = {"kid": key.kid} if key.kid else None
    return jwt.encode(claims, signing_key, algorithm=key.alg, headers=headers)


# ---- key loading: once, at start; a bad key stops the process with a message naming it


def _algorithm(key: TokenKey, where: str) -> Algorithm:
    algorithm = get_default_algorithms().get(key.alg)
    if algorithm is None or key.alg == "none":
        raise ValueError(f"{where}.alg: {key.alg!r} is not a supported signing algorithm")
    return algorithm


def _load_key(key: TokenKey, where: str) -> list[_Key]:
    """The verification key(s) one configured key provides: one, or one per JWKS entry."""
    if key.jwks_url is not None:
        return []  # fetched at run time: gateway.jwks
    algorithm = _algorithm(key, where)
    kid = key.kid or None
    if key.alg.startswith("HS"):
        if key.secret is None or not key.secret:
            raise ValueError(f"{where}.secret: required for {key.alg}")
        try:
            secret: bytes = algorithm.prepare_key(key.secret.reveal().encode("utf-8"))
        except jwt.InvalidKeyError:
            # PyJWT refuses PEM/SSH-looking secrets: they would enable RS/HS confusion.
            raise ValueError(f"{where}.secret: looks like a key, not a shared secret") from None
        _check_strength(algorithm, secret, f"{where}.secret")
        return [_Key(key.use, key.alg, kid, secret)]
    if key.public_key is not None:
        try:
            prepared = algorithm.prepare_key(key.public_key.reveal())
        except Exception:
            prepared = None
        public = _public(prepared, f"{where}.public_key", key.alg)
        _check_strength(algorithm, public, f"{where}.public_key")
        return [_Key(key.use, key.alg, kid, public)]
    if key.jwks is not None:
        return _load_jwks(key, key.jwks, algorithm, f"{where}.jwks")
    raise ValueError(f"{where}: {key.alg} needs public_key or jwks")


def _load_jwks(key: TokenKey, text: str, algorithm: Algorithm, where: str) -> list[_Key]:
    """One key per JWKS entry, keyed by the entry's own kid and pinned to the configured alg."""
    try:
        entries = json.loads(text)["keys"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f'{where}: expected a JWKS document {{"keys": [...]}}') from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: expected a non-empty list of keys")
    loaded = []
    for position, entry in enumerate(entries):
        here = f"{where}.keys[{position}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{here}: expected a JSON object")
        if entry.get("use") == "enc":
            continue  # an encryption key published alongside: never used to verify signatures
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"{here}: every JWKS key needs a kid")
        declared = entry.get("alg")
        if declared is not None and declared != key.alg:
            raise ValueError(f"{here}: declares alg {declared!r}, but is pinned to {key.alg}")
        try:
            # Error text from PyJWK can quote the JWK itself, so it is never passed on.
            prepared: object = jwt.PyJWK(entry, algorithm=key.alg).key
        except Exception:
            prepared = None
        public = _public(prepared, here, key.alg)
        _check_strength(algorithm, public, here)
        loaded.append(_Key(key.use, key.alg, kid, public))
    if not loaded:
        raise ValueError(f"{where}: no signature keys (all are encryption keys)")
    return loaded


def _public(prepared: object, where: str, alg: str) -> PublicKey:
    """The public half: a private key pasted where a public one belongs still only verifies."""
    if isinstance(prepared, _PRIVATE_TYPES):
        prepared = prepared.public_key()
    if not isinstance(prepared, _PUBLIC_TYPES):
        raise ValueError(f"{where}: expected a public key usable with {alg}")
    return prepared


def _check_strength(algorithm: Algorithm, key: bytes | PublicKey, where: str) -> None:
    """Refuse keys PyJWT would warn about on every request (short HMAC secrets, small RSA keys)."""
    weakness = algorithm.check_key_length(key)
    if weakness:
        raise ValueError(f"{where}: {weakness}")


def _number(value: object) -> float | None:
    """A finite JSON number (not a bool); NaN or Infinity would make a token immortal."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
