"""The relying party's pure checks: return_to, the flow cookie, ID and logout tokens."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from gateway.jwks import RemoteKey
from gateway.oidc.flow import (
    BACKCHANNEL_EVENT,
    SignInError,
    authorization_url,
    new_flow,
    open_flow,
    safe_return_to,
    seal_flow,
    signature_algorithms,
    verify_id_token,
    verify_logout_token,
)
from gateway.settings import Secret

ISSUER = "https://idp.test"
CLIENT = "asset-gateway"
SECRET = Secret("flow-secret-0123456789abcdef0123456789")
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY = RemoteKey("k1", "RS256", PRIVATE.public_key())


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("/media/a1/b.pdf", "/media/a1/b.pdf"),
        ("/media/a1/b.pdf?x=1&y=%2F", "/media/a1/b.pdf?x=1&y=%2F"),  # an encoded slash in the query is data
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("///evil.example", "/"),
        ("/\\evil.example", "/"),
        ("\\/evil.example", "/"),
        ("/%2f%2fevil.example", "/"),
        ("/%2F/evil.example", "/"),
        ("/%5cevil.example", "/"),
        ("/%252f%252fevil.example", "/"),
        ("/a%0d%0aSet-Cookie:x", "/"),
        ("/a\r\nb", "/"),
        ("/a\x00b", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("/é", "/"),
        ("/" + "a" * 3000, "/"),
        ("/x/https://evil.example", "/"),
    ],
)
def test_return_to_is_a_path_on_this_host(given_: str | None, expected: str) -> None:
    assert safe_return_to(given_) == expected


@given(st.text(max_size=200))
def test_return_to_never_names_another_origin(value: str) -> None:
    result = safe_return_to(value)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result
    assert result == "/" or result == value


def test_flow_cookie_round_trip_and_refusals() -> None:
    now = time.time()
    flow = new_flow("/media/a/b.pdf", "https://assets.test/oauth2/callback")
    sealed = seal_flow(flow, SECRET, now)
    assert open_flow(sealed, flow.state, [SECRET], now + 10) == flow
    assert open_flow(sealed, flow.state, [Secret("another-secret-0123456789abcdef012"), SECRET], now) == flow
    for state, secrets, at, code in [
        ("x" * 43, [SECRET], now, "state_mismatch"),
        (flow.state, [Secret("another-secret-0123456789abcdef012")], now, "flow_signature"),
        (flow.state, [SECRET], now + 601, "flow_expired"),
    ]:
        with pytest.raises(SignInError) as refused:
            open_flow(sealed, state, secrets, at)
        assert refused.value.code == code


def test_authorization_url_carries_pkce_s256_state_and_nonce() -> None:
    flow = new_flow("/", "https://assets.test/oauth2/callback")
    url = authorization_url("https://idp.test/auth?tenant=1", CLIENT, ["openid", "profile"], flow)
    assert url.startswith("https://idp.test/auth?tenant=1&response_type=code&")
    for part in (f"state={flow.state}", f"nonce={flow.nonce}", f"code_challenge={flow.challenge}",
                 "code_challenge_method=S256", "scope=openid+profile"):  # fmt: skip
        assert part in url
    assert flow.verifier not in url and 43 <= len(flow.verifier) <= 128


def test_only_public_key_algorithms_are_accepted_from_discovery() -> None:
    assert signature_algorithms(["none", "HS256", "RS256", "ES256"]) == {"RS256", "ES256"}
    assert signature_algorithms(None) == {"RS256"}


def id_token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "ada", "nonce": "n-1", "iat": now, "exp": now + 300}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, PRIVATE, algorithm="RS256", headers={"kid": "k1"})


def check_id(token: str, **options: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"keys": {"k1": KEY}.get, "algorithms": frozenset({"RS256"}),
                                 "issuer": ISSUER, "client_id": CLIENT, "nonce": "n-1",
                                 "now": time.time()}  # fmt: skip
    return verify_id_token(token, **{**arguments, **options})


def test_a_good_id_token_passes() -> None:
    assert check_id(id_token())["sub"] == "ada"
    assert check_id(id_token(aud=[CLIENT, "api"], azp=CLIENT))["sub"] == "ada"


@pytest.mark.parametrize(
    ("token", "options", "code"),
    [
        (lambda: id_token(nonce="other"), {}, "nonce_mismatch"),
        (lambda: id_token(nonce=None), {}, "nonce_mismatch"),
        (lambda: id_token(aud="another-client"), {}, "wrong_audience"),
        (lambda: id_token(aud=[CLIENT, "api"]), {}, "wrong_audience"),  # several audiences, no azp
        (lambda: id_token(iss="https://evil.test"), {}, "wrong_issuer"),
        (lambda: id_token(exp=int(time.time()) - 120), {}, "token_expired"),
        (lambda: id_token(iat=int(time.time()) + 600), {}, "token_not_yet_valid"),
        (lambda: id_token(sub=""), {}, "no_subject"),
        (lambda: id_token(), {"algorithms": frozenset({"ES256"})}, "algorithm_refused"),
        (lambda: id_token(), {"keys": {}.get}, "unknown_key"),
        (
            lambda: jwt.encode({"sub": "ada"}, "k" * 32, algorithm="HS256", headers={"kid": "k1"}),
            {},
            "algorithm_refused",
        ),
        (
            lambda: jwt.encode({"sub": "ada"}, None, algorithm="none", headers={"kid": "k1"}),
            {},
            "algorithm_refused",
        ),
        (lambda: id_token()[:-4] + "AAAA", {}, "token_invalid"),
        (lambda: "not.a.token", {}, "token_malformed"),
    ],
)
def test_bad_id_tokens_are_refused(token: Any, options: dict[str, Any], code: str) -> None:
    with pytest.raises(SignInError) as refused:
        check_id(token(), **options)
    assert refused.value.code == code


def logout_token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "iat": now, "exp": now + 120, "jti": "j-1", "sid": "s-1",
              "sub": "ada", "events": {BACKCHANNEL_EVENT: {}}}  # fmt: skip
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, PRIVATE, algorithm="RS256", headers={"kid": "k1"})


def check_logout(token: str) -> tuple[str | None, str | None]:
    return verify_logout_token(token, keys={"k1": KEY}.get, algorithms=frozenset({"RS256"}), issuer=ISSUER,
                               client_id=CLIENT, now=time.time())  # fmt: skip


def test_logout_tokens_name_a_sid_or_a_sub() -> None:
    assert check_logout(logout_token()) == ("s-1", "ada")
    assert check_logout(logout_token(sid=None)) == (None, "ada")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"events": None}, "not_a_logout_token"),
        ({"events": {"http://example.org/other": {}}}, "not_a_logout_token"),
        ({"nonce": "n"}, "logout_token_with_nonce"),
        ({"sid": None, "sub": None}, "no_sid_or_sub"),
        ({"jti": None}, "no_jti"),
        ({"aud": "another-client"}, "wrong_audience"),
        ({"iat": int(time.time()) - 3600, "exp": None}, "token_stale"),
    ],
)
def test_bad_logout_tokens_are_refused(overrides: dict[str, Any], code: str) -> None:
    with pytest.raises(SignInError) as refused:
        check_logout(logout_token(**overrides))
    assert refused.value.code == code
