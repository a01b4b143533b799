"""`[oidc]` and `jwks_url` settings: read, checked, and shown with secrets redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import ConfigError, describe_settings, load_settings

SESSION = "session-secret-0123456789abcdef0123456789"
OIDC = f"""
[oidc]
issuer = "https://idp.example.org"
client_id = "asset-gateway"
client_secret = "env:OIDC_CLIENT_SECRET"
session_secrets = ["env:SESSION_SECRET", "{SESSION}-old"]
"""
ENV = {"OIDC_CLIENT_SECRET": "client-secret-value", "SESSION_SECRET": SESSION}


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(str(path), {**ENV, **(environ or {})})


def test_oidc_section_with_defaults(tmp_path: Path) -> None:
    oidc = load(tmp_path, OIDC).oidc
    assert oidc.enabled and oidc.client_id == "asset-gateway"
    assert oidc.client_secret.reveal() == "client-secret-value"
    assert [s.reveal() for s in oidc.session_secrets] == [SESSION, SESSION + "-old"]
    assert (oidc.scopes, oidc.org_claim, oidc.groups_claim, oidc.session_ttl) == (
        ("openid", "profile"), "org", "groups", 28800,
    )  # fmt: skip


def test_oidc_is_off_by_default() -> None:
    assert not load_settings(None, {}).oidc.enabled


def test_secrets_are_redacted(tmp_path: Path) -> None:
    shown = {key: value for key, value, _ in describe_settings(load(tmp_path, OIDC))}
    assert shown["oidc.client_secret"] == '"**********"'
    assert shown["oidc.session_secrets"] == '["**********", "**********"]'
    assert SESSION not in str(shown) and "client-secret-value" not in str(shown)


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (OIDC.replace('client_id = "asset-gateway"', ""), {}, "oidc.client_id: required"),
        (OIDC.replace("session_secrets", "# "), {}, "oidc.session_secrets: required"),
        (OIDC, {"SESSION_SECRET": "short"}, "oidc.session_secrets: expected secrets of at least 32 bytes"),
        (OIDC + 'scopes = ["profile"]\n', {}, "oidc.scopes: expected a list that includes 'openid'"),
        (OIDC + "session_ttl = 10\n", {}, "oidc.session_ttl: expected an integer from 60"),
        (OIDC.replace("https://idp.example.org", "idp.example.org"), {}, "oidc.issuer: expected an absolute"),
        (
            '[[tokens.keys]]\nuse = "preview"\njwks_url = "https://idp/jwks"\n',
            {},
            "tokens.keys[0].jwks_url: only user",
        ),
        (
            '[[tokens.keys]]\nuse = "user"\njwks_url = "ftp://idp/jwks"\n',
            {},
            "tokens.keys[0].jwks_url: expected",
        ),
        (
            '[[tokens.keys]]\nuse = "user"\njwks_url = "https://idp/jwks"\nalg = "HS256"\n',
            {},
            "tokens.keys[0].alg:",
        ),
        (
            '[[tokens.keys]]\nuse = "user"\njwks_url = "https://i/j"\nkid = "k"\n',
            {},
            "tokens.keys[0].kid: not allowed",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    assert str(caught.value).startswith(message)
    assert "short" not in str(caught.value) or "short" in message


def test_a_user_key_may_be_fetched_from_a_jwks_url(tmp_path: Path) -> None:
    text = '[[tokens.keys]]\nuse = "user"\njwks_url = "https://idp.example.org/jwks.json"\n'
    (key,) = load(tmp_path, text).tokens.keys
    assert (key.use, key.alg, key.jwks_url) == ("user", "", "https://idp.example.org/jwks.json")
    shown = {k: v for k, v, _ in describe_settings(load(tmp_path, text))}
    assert "https://idp.example.org/jwks.json" in shown["tokens.keys"]
