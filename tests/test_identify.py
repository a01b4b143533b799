"""Step two, raw tokens → Identity: the first user token that verifies wins (Bearer, then the
session cookie), a preview link in the query wins over the preview cookie, and a token that does
not verify is simply absent. A real TokenVerifier with real keys: pure code, no I/O."""

from __future__ import annotations

import pytest

from gateway.identify import identify
from gateway.models import ANONYMOUS, PreviewIdentity, UserIdentity
from gateway.parsing import RawTokens
from gateway.settings import Secret, TokenKey, TokensSettings
from gateway.tokens import TokenVerifier, mint_token

NOW = 1_700_000_000.0
USER_KEY = TokenKey(use="user", alg="HS256", secret=Secret("user-secret-0123456789-abcdefghijklmnop"))
PREVIEW_KEY = TokenKey(use="preview", alg="HS256", secret=Secret("preview-secret-0123456789-abcdefghijkl"))
BAD = "not.a.token"


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(TokensSettings(leeway=0, keys=(USER_KEY, PREVIEW_KEY)))


def user(sub: str) -> str:
    return mint_token(USER_KEY, {"sub": sub, "exp": NOW + 60})


def preview(sub: str) -> str:
    return mint_token(PREVIEW_KEY, {"sub": sub, "exp": NOW + 60})


def test_no_tokens_is_anonymous(verifier: TokenVerifier) -> None:
    assert identify(RawTokens(), verifier, NOW) is ANONYMOUS


@pytest.mark.parametrize(
    ("candidates", "sub"),
    [
        ((user("bearer"), user("cookie")), "bearer"),  # the Bearer header comes first
        ((user("bearer"), BAD), "bearer"),  # a bad session cookie does not undo a good Bearer
        ((BAD, user("cookie")), "cookie"),  # a bad Bearer does not hide a good session cookie
        ((BAD, BAD), None),
    ],
    ids=["both-good", "good-then-bad", "bad-then-good", "both-bad"],
)
def test_the_first_user_token_that_verifies_wins(
    verifier: TokenVerifier, candidates: tuple[str, ...], sub: str | None
) -> None:
    identity = identify(RawTokens(user=candidates), verifier, NOW)
    assert identity.user == (
        None if sub is None else UserIdentity(sub, None, frozenset(), NOW + 60, NOW + 60)
    )
    assert identity.preview is None


@pytest.mark.parametrize(
    ("query", "cookie", "sub", "from_query"),
    [
        (preview("link"), preview("cookie"), "link", True),
        (preview("link"), BAD, "link", True),  # a stale cookie does not undo a fresh link
        (BAD, preview("cookie"), "cookie", False),
        (None, preview("cookie"), "cookie", False),
        (BAD, BAD, None, False),
    ],
    ids=["both-good", "link-good-cookie-bad", "link-bad-cookie-good", "cookie-only", "both-bad"],
)
def test_a_preview_link_wins_over_the_preview_cookie(
    verifier: TokenVerifier, query: str | None, cookie: str, sub: str | None, from_query: bool
) -> None:
    identity = identify(RawTokens(preview_query=query, preview_cookie=cookie), verifier, NOW)
    assert identity.preview == (None if sub is None else PreviewIdentity(sub, False, NOW + 60, NOW + 60))
    assert identity.preview_from_query is from_query
    assert identity.user is None
