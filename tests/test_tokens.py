"""Token verification (DESIGN 2.3): every hostile or broken token reads as "no token" (None),
valid ones become identities, and time is an input so expiry is tested without sleeping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.models import PreviewIdentity, UserIdentity
from gateway.settings import Secret, TokenKey, TokensSettings
from gateway.tokens import MAX_TOKEN_BYTES, REJECTION_REASONS, Rejection, TokenVerifier, mint_token

NOW = 1_700_000_000.0
ISSUER = "https://idp.example.org"
AUDIENCE = "asset-gateway"
KID = "idp-1"
PREVIEW_SECRET = "preview-secret-0123456789-abcdefghijklmnop"
DROP = object()  # a claim value meaning "leave this claim out"


@dataclass(frozen=True)
class RsaPair:
    private_pem: str
    public_pem: str
    public_key: rsa.RSAPublicKey


@pytest.fixture(scope="module")
def rsa_pair() -> RsaPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return RsaPair(private_pem, public_pem, private.public_key())


def user_key(rsa_pair: RsaPair) -> TokenKey:
    return TokenKey(use="user", alg="RS256", kid=KID, public_key=Secret(rsa_pair.public_pem))


PREVIEW_KEY = TokenKey(use="preview", alg="HS256", secret=Secret(PREVIEW_SECRET))


@pytest.fixture
def verifier(rsa_pair: RsaPair) -> TokenVerifier:
    settings = TokensSettings(
        issuer=ISSUER, audience=AUDIENCE, leeway=30, keys=(user_key(rsa_pair), PREVIEW_KEY)
    )
    return TokenVerifier(settings)


def user_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "user-1",
        "org": "org-1",
        "groups": ["editors"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW - 60,
        "exp": NOW + 300,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not DROP}


def preview_claims(**changes: Any) -> dict[str, Any]:
    return user_claims(**{"sub": "bypass-1", "org": DROP, "groups": DROP, **changes})


def rs256(rsa_pair: RsaPair, claims: dict[str, Any], kid: str | None = KID) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, rsa_pair.private_pem, algorithm="RS256", headers=headers)


def hs256(claims: dict[str, Any], secret: str = PREVIEW_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token built by hand, for the attacks PyJWT refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


# ---- accepted


def test_valid_rs256_user_token_with_kid_from_pem(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    identity = verifier.verify_user(rs256(rsa_pair, user_claims()), NOW)
    assert identity == UserIdentity("user-1", "org-1", frozenset({"editors"}), NOW + 300, NOW + 300 + 30)


def test_valid_rs256_user_token_from_jwks(rsa_pair: RsaPair) -> None:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_pair.public_key, as_dict=True)
    jwks = json.dumps({"keys": [{**jwk, "kid": "jwks-1", "use": "sig"}]})
    key = TokenKey(use="user", alg="RS256", jwks=jwks)
    verifier = TokenVerifier(TokensSettings(keys=(key,)))

    claims = user_claims(iss=DROP, aud=DROP)
    assert verifier.verify_user(rs256(rsa_pair, claims, kid="jwks-1"), NOW) is not None
    assert verifier.verify_user(rs256(rsa_pair, claims, kid=None), NOW) is None  # JWKS needs a kid


@pytest.mark.parametrize(
    ("flag", "granted"),
    [(True, True), (DROP, False), (False, False), ("true", False), (1, False)],
    ids=["true", "absent", "false", "string-true", "one"],
)
def test_hs256_preview_token_draft_asset_manager_access(
    verifier: TokenVerifier, flag: object, granted: bool
) -> None:
    token = hs256(preview_claims(draft_asset_manager_access=flag))
    assert verifier.verify_preview(token, NOW) == PreviewIdentity(
        "bypass-1", granted, NOW + 300, NOW + 300 + 30
    )


def test_user_claims_may_leave_out_org_and_groups(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    identity = verifier.verify_user(rs256(rsa_pair, user_claims(org=DROP, groups=DROP)), NOW)
    assert identity == UserIdentity("user-1", None, frozenset(), NOW + 300, NOW + 300 + 30)


@pytest.mark.parametrize(
    "changes",
    [{"exp": NOW - 29}, {"nbf": NOW + 29}, {"iat": NOW + 29}],
    ids=["expired-within-leeway", "nbf-within-leeway", "iat-within-leeway"],
)
def test_leeway_honoured(verifier: TokenVerifier, rsa_pair: RsaPair, changes: Any) -> None:
    assert verifier.verify_user(rs256(rsa_pair, user_claims(**changes)), NOW) is not None


def test_cache_hit_skips_second_verification(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    token = rs256(rsa_pair, user_claims())
    first = verifier.verify_user(token, NOW)
    count = verifier.verifications
    assert count >= 1
    assert verifier.verify_user(token, NOW + 1) == first
    assert verifier.verifications == count


def test_cached_entry_stops_being_valid_after_exp(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    token = rs256(rsa_pair, user_claims(exp=NOW + 60))
    assert verifier.verify_user(token, NOW) is not None
    assert verifier.verify_user(token, NOW + 60 + 30) is not None  # exp + leeway: still valid
    assert verifier.verify_user(token, NOW + 60 + 31) is None


def test_cache_keeps_user_and_preview_apart(verifier: TokenVerifier) -> None:
    token = hs256(preview_claims())
    assert verifier.verify_preview(token, NOW) is not None
    assert verifier.verify_user(token, NOW) is None
    assert verifier.verify_preview(token, NOW) is not None


def test_cache_size_zero_verifies_every_time(rsa_pair: RsaPair) -> None:
    verifier = TokenVerifier(TokensSettings(keys=(user_key(rsa_pair),)), cache_size=0)
    token = rs256(rsa_pair, user_claims(iss=DROP, aud=DROP))
    assert verifier.verify_user(token, NOW) is not None
    assert verifier.verify_user(token, NOW) is not None
    assert verifier.verifications == 2


# ---- rejected: attacks on the header and signature


def test_alg_none_rejected(verifier: TokenVerifier) -> None:
    token = handmade({"alg": "none", "typ": "JWT", "kid": KID}, user_claims())
    assert verifier.verify_user(token, NOW) is None


def test_hs256_signed_with_rsa_public_key_rejected(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    """Algorithm confusion: the public PEM used as an HMAC secret must not verify."""
    secret = rsa_pair.public_pem.encode()
    token = handmade(
        {"alg": "HS256", "typ": "JWT", "kid": KID},
        user_claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    assert verifier.verify_user(token, NOW) is None


# Algorithms are pinned per key (DESIGN 2.3). These tokens are signed by hand, with `hmac` and
# `cryptography`, so the expectation does not lean on the JWT library the verifier uses; each one is
# correctly signed for the algorithm its header names, with the very secret or private key the
# configured key belongs to. Only the algorithm differs from the one the key is pinned to.


def rsa_private(rsa_pair: RsaPair) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(rsa_pair.private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def signed_by_hand(alg: str, key: object, claims: dict[str, Any], kid: str | None = KID) -> str:
    """A JWS built from its definition (RFC 7515/7518), for `alg` in HS256/HS512/RS256/RS512/
    PS256/ES256; `key` is the HMAC secret (bytes) or the private key object."""
    header: dict[str, Any] = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}

    def sign(data: bytes) -> bytes:
        digest = {"256": hashes.SHA256(), "512": hashes.SHA512()}[alg[2:]]
        if alg.startswith("HS"):
            assert isinstance(key, bytes)
            return hmac.new(key, data, {"256": hashlib.sha256, "512": hashlib.sha512}[alg[2:]]).digest()
        if alg.startswith("RS"):
            assert isinstance(key, rsa.RSAPrivateKey)
            return key.sign(data, padding.PKCS1v15(), digest)
        if alg.startswith("PS"):
            assert isinstance(key, rsa.RSAPrivateKey)
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            return key.sign(data, pss, digest)
        assert alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants r || s, not DER

    return handmade(header, claims, sign)


def test_hand_signed_tokens_in_the_pinned_algorithm_are_accepted(
    verifier: TokenVerifier, rsa_pair: RsaPair
) -> None:
    """The control for the rejections below: the hand signing itself is right."""
    user = signed_by_hand("RS256", rsa_private(rsa_pair), user_claims())
    assert verifier.verify_user(user, NOW) == UserIdentity(
        "user-1", "org-1", frozenset({"editors"}), NOW + 300, NOW + 300 + 30
    )
    preview = signed_by_hand("HS256", PREVIEW_SECRET.encode(), preview_claims(), kid=None)
    assert verifier.verify_preview(preview, NOW) == PreviewIdentity(
        "bypass-1", False, NOW + 300, NOW + 300 + 30
    )


def test_hs512_token_on_an_hs256_key_rejected() -> None:
    """The secret is long enough for HS512 too, so only the pinning can refuse the token."""
    secret = "s" * 64
    key = TokenKey(use="preview", alg="HS256", secret=Secret(secret))
    verifier = TokenVerifier(TokensSettings(keys=(key,)))
    control = signed_by_hand("HS256", secret.encode(), preview_claims(), kid=None)
    assert verifier.verify_preview(control, NOW) is not None
    token = signed_by_hand("HS512", secret.encode(), preview_claims(), kid=None)
    assert verifier.verify_preview(token, NOW) is None


@pytest.mark.parametrize("alg", ["PS256", "RS512"])
def test_other_rsa_algorithm_on_an_rs256_key_rejected(
    verifier: TokenVerifier, rsa_pair: RsaPair, alg: str
) -> None:
    """Signed with the identity provider's own private key, only not in RS256."""
    token = signed_by_hand(alg, rsa_private(rsa_pair), user_claims())
    assert verifier.verify_user(token, NOW) is None


def test_es256_token_on_an_rs256_key_rejected(verifier: TokenVerifier) -> None:
    token = signed_by_hand("ES256", ec.generate_private_key(ec.SECP256R1()), user_claims())
    assert verifier.verify_user(token, NOW) is None


@pytest.mark.parametrize("kid", [["idp-1"], {"k": 1}, 7, None], ids=["list", "object", "number", "null"])
def test_a_header_with_an_odd_kid_is_no_token_not_an_error(verifier: TokenVerifier, kid: object) -> None:
    """Whatever the header holds, the answer is "no token": never an exception (a 500) that could
    carry the token into a log."""
    token = handmade({"alg": "HS256", "typ": "JWT", "kid": kid}, preview_claims())
    assert verifier.verify_user(token, NOW) is None
    assert verifier.verify_preview(token, NOW) is None


def test_unknown_kid_rejected(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    assert verifier.verify_user(rs256(rsa_pair, user_claims(), kid="idp-2"), NOW) is None


def test_preview_key_signed_token_presented_as_user_token_rejected(
    verifier: TokenVerifier,
) -> None:
    token = hs256(user_claims())
    assert verifier.verify_preview(token, NOW) is not None  # valid, but only as a preview token
    assert verifier.verify_user(token, NOW) is None


def test_token_signed_by_another_key_rejected(verifier: TokenVerifier) -> None:
    assert verifier.verify_preview(hs256(preview_claims(), secret="x" * 40), NOW) is None


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "",
        f"{b64(b'{}')}.{b64(b'{}')}",
        "!!!.@@@.###",
        f"{b64(b'not json')}.{b64(b'{}')}.{b64(b'sig')}",
        f"{b64(b'[1, 2]')}.{b64(b'{}')}.{b64(b'sig')}",
        f"{b64(json.dumps({'alg': 'RS256', 'kid': KID}).encode())}.{b64(b'not json')}.{b64(b'x')}",
        "é.é.é",
    ],
    ids=[
        "garbage",
        "empty",
        "two-segments",
        "bad-base64",
        "header-not-json",
        "header-not-object",
        "payload-not-json",
        "non-ascii",
    ],
)
def test_malformed_rejected(verifier: TokenVerifier, token: str) -> None:
    assert verifier.verify_user(token, NOW) is None
    assert verifier.verify_preview(token, NOW) is None


def test_over_8kb_rejected_before_parsing(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    token = rs256(rsa_pair, user_claims(padding="x" * MAX_TOKEN_BYTES))
    assert len(token) > MAX_TOKEN_BYTES
    assert verifier.verify_user(token, NOW) is None
    assert verifier.verifications == 0


# ---- rejected: claims (each token is correctly signed; only the named claim is wrong)

CLAIM_CASES = {
    "expired": {"exp": NOW - 31},
    "nbf-in-the-future": {"nbf": NOW + 31},
    "iat-in-the-future": {"iat": NOW + 31},
    "wrong-iss": {"iss": "https://evil.example.org"},
    "missing-iss": {"iss": DROP},
    "wrong-aud": {"aud": "another-service"},
    "missing-aud": {"aud": DROP},
    "missing-exp": {"exp": DROP},
    "exp-not-a-number": {"exp": "tomorrow"},
    "exp-is-bool": {"exp": True},
    "exp-infinite": {"exp": float("inf")},
    "nbf-not-a-number": {"nbf": "now"},
    "exp-numeric-string": {"exp": str(int(NOW + 300))},  # JSON numbers only, not what parses as one
    "nbf-is-bool": {"nbf": True},
    "iat-numeric-string": {"iat": str(int(NOW - 60))},
    "missing-sub": {"sub": DROP},
    "empty-sub": {"sub": ""},
    "sub-not-a-string": {"sub": 42},
    "org-not-a-string": {"org": ["org-1"]},
    "groups-not-a-list": {"groups": "editors"},
    "groups-with-non-string": {"groups": ["editors", 7]},
}


@pytest.mark.parametrize("changes", CLAIM_CASES.values(), ids=CLAIM_CASES.keys())
def test_user_token_with_bad_claim_rejected(
    verifier: TokenVerifier, rsa_pair: RsaPair, changes: dict[str, Any]
) -> None:
    assert verifier.verify_user(rs256(rsa_pair, user_claims(**changes)), NOW) is None


@pytest.mark.parametrize(
    "changes",
    [{"exp": NOW - 31}, {"exp": DROP}, {"sub": DROP}],
    ids=["expired", "missing-exp", "missing-sub"],
)
def test_preview_token_with_bad_claim_rejected(verifier: TokenVerifier, changes: dict[str, Any]) -> None:
    assert verifier.verify_preview(hs256(preview_claims(**changes)), NOW) is None


def test_preview_tokens_are_not_held_to_the_identity_providers_iss_and_aud(verifier: TokenVerifier) -> None:
    """iss/aud name the identity provider (DESIGN 2.3); the publishing system mints preview links."""
    token = hs256(preview_claims(aud="another-service", iss="https://publisher.example.org"))
    assert verifier.verify_preview(token, NOW) is not None


def test_iss_and_aud_not_checked_when_not_configured(rsa_pair: RsaPair) -> None:
    verifier = TokenVerifier(TokensSettings(keys=(user_key(rsa_pair),)))
    claims = user_claims(iss="https://anyone.example.org", aud="anything")
    assert verifier.verify_user(rs256(rsa_pair, claims), NOW) is not None


# ---- key loading and minting


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            TokenKey(use="user", alg="RS256", public_key=Secret("-----BEGIN PUBLIC KEY-----\nxx")),
            "tokens.keys[1].public_key",
        ),
        (TokenKey(use="user", alg="RS256", jwks='{"keys": [{"kty": "RSA"}]}'), "needs a kid"),
        (TokenKey(use="preview", alg="HS512", secret=Secret("s" * 32)), "tokens.keys[1].secret"),
        (
            TokenKey(use="preview", alg="HS256", secret=Secret("")),
            "tokens.keys[1].secret: required for HS256",
        ),
        (
            TokenKey(use="user", alg="RS256", jwks='{"key": []}'),
            "tokens.keys[1].jwks: expected a JWKS document",
        ),
        (TokenKey(use="user", alg="RS256", jwks="[]"), "tokens.keys[1].jwks: expected a JWKS document"),
    ],
    ids=[
        "bad-pem",
        "jwks-without-kid",
        "hs512-secret-too-short",
        "empty-secret",
        "jwks-without-keys",
        "jwks-a-list",
    ],
)
def test_unusable_key_material_names_the_key(key: TokenKey, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TokenVerifier(TokensSettings(keys=(PREVIEW_KEY, key)))


def test_jwks_key_error_does_not_quote_the_key() -> None:
    secret_jwk = {"kty": "oct", "kid": "k1", "k": b64(b"very-secret-material-0123456789ab")}
    key = TokenKey(use="user", alg="RS256", jwks=json.dumps({"keys": [secret_jwk]}))
    with pytest.raises(ValueError, match=r"tokens\.keys\[0\]\.jwks\.keys\[0\]") as raised:
        TokenVerifier(TokensSettings(keys=(key,)))
    assert secret_jwk["k"] not in str(raised.value)
    chained = raised.value.__cause__ or (
        None if raised.value.__suppress_context__ else raised.value.__context__
    )
    assert chained is None  # no PyJWK error (which may quote the JWK) rides along


def test_mint_hs256_round_trips(verifier: TokenVerifier) -> None:
    token = mint_token(PREVIEW_KEY, preview_claims(draft_asset_manager_access=True))
    assert verifier.verify_preview(token, NOW) == PreviewIdentity("bypass-1", True, NOW + 300, NOW + 300 + 30)


def test_mint_rs256_with_private_pem_puts_kid_in_header(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    token = mint_token(user_key(rsa_pair), user_claims(), private_key_pem=rsa_pair.private_pem)
    assert jwt.get_unverified_header(token)["kid"] == KID
    assert verifier.verify_user(token, NOW) is not None


def test_mint_rs256_needs_a_private_key(rsa_pair: RsaPair) -> None:
    with pytest.raises(ValueError, match="private_key_pem"):
        mint_token(user_key(rsa_pair), user_claims())
    with pytest.raises(ValueError, match="private_key_pem"):
        mint_token(user_key(rsa_pair), user_claims(), private_key_pem=rsa_pair.public_pem)


# ---- why a token was refused: one bounded reason, never anything of the token

CLAIM_REASONS = {
    "expired": "expired",
    "nbf-in-the-future": "not_yet_valid",
    "iat-in-the-future": "not_yet_valid",
    "wrong-iss": "wrong_issuer",
    "missing-iss": "wrong_issuer",
    "wrong-aud": "wrong_audience",
    "missing-aud": "wrong_audience",
    "missing-exp": "malformed",
    "exp-not-a-number": "malformed",
    "missing-sub": "malformed",
    "groups-not-a-list": "malformed",
}


@pytest.mark.parametrize(("case", "reason"), CLAIM_REASONS.items())
def test_a_refused_claim_names_its_reason(
    verifier: TokenVerifier, rsa_pair: RsaPair, case: str, reason: str
) -> None:
    token = rs256(rsa_pair, user_claims(**CLAIM_CASES[case]))
    assert verifier.check("user", token, NOW) == Rejection(reason)
    assert verifier.check("user", token, NOW) == Rejection(reason)  # the cached verdict says the same


def test_each_way_of_being_wrong_has_its_reason(verifier: TokenVerifier, rsa_pair: RsaPair) -> None:
    confused = handmade(
        {"alg": "HS256", "typ": "JWT", "kid": KID},
        user_claims(),
        lambda data: hmac.new(rsa_pair.public_pem.encode(), data, hashlib.sha256).digest(),
    )
    forged = rs256(rsa_pair, user_claims())
    header, payload, _ = forged.split(".")
    cases = {
        "unknown_kid": rs256(rsa_pair, user_claims(), kid="idp-2"),
        "alg_not_allowed": confused,
        "bad_signature": f"{header}.{payload}.{b64(b'not the signature')}",
        "malformed": "garbage",
        "too_large": rs256(rsa_pair, user_claims(padding="x" * MAX_TOKEN_BYTES)),
    }
    got = {reason: verifier.check("user", token, NOW) for reason, token in cases.items()}
    assert got == {reason: Rejection(reason) for reason in cases}
    none = handmade({"alg": "none", "typ": "JWT", "kid": KID}, user_claims())
    assert verifier.check("user", none, NOW) == Rejection("alg_not_allowed")
    assert verifier.check("preview", hs256(preview_claims(), secret="x" * 40), NOW) == Rejection(
        "bad_signature"
    )


def test_a_cached_verdict_turns_expired_and_not_yet_valid_with_time(
    verifier: TokenVerifier, rsa_pair: RsaPair
) -> None:
    token = rs256(rsa_pair, user_claims(nbf=NOW + 100, exp=NOW + 300))
    assert verifier.check("user", token, NOW) == Rejection("not_yet_valid")
    assert isinstance(verifier.check("user", token, NOW + 200), UserIdentity)
    assert verifier.check("user", token, NOW + 400) == Rejection("expired")
    assert verifier.verifications == 1


def test_reasons_are_the_documented_set() -> None:
    assert set(REJECTION_REASONS) == {
        "expired", "not_yet_valid", "bad_signature", "unknown_kid", "alg_not_allowed",
        "wrong_issuer", "wrong_audience", "malformed", "too_large", "revoked",
    }  # fmt: skip


def test_a_revoked_session_is_refused_as_revoked_every_time_it_is_asked() -> None:
    from gateway.sessions import mint_session, new_session

    secret = Secret("session-secret-0123456789-abcdefghijklmnop")
    ended: set[str] = set()
    verifier = TokenVerifier(
        TokensSettings(), session_secrets=(secret,), revoked=lambda identity: identity.sid in ended
    )
    session = new_session("u1", None, ["g"], NOW, 600)
    token = mint_session(session, secret)
    assert isinstance(verifier.check("user", token, NOW + 1), UserIdentity)
    ended.add(session.sid)  # signed out: the cached verdict must not outlive it
    assert verifier.check("user", token, NOW + 2) == Rejection("revoked")
    assert verifier.verify_user(token, NOW + 2) is None
