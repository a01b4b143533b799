"""Step two: raw tokens → Identity. A rejected token is simply no token (never an error)."""

from __future__ import annotations

from gateway.models import ANONYMOUS, Identity
from gateway.parsing import RawTokens
from gateway.tokens import TokenVerifier


def identify(tokens: RawTokens, verifier: TokenVerifier, now: float) -> Identity:
    if not tokens.user and tokens.preview_query is None and tokens.preview_cookie is None:
        return ANONYMOUS
    user = None
    for candidate in tokens.user:
        user = verifier.verify_user(candidate, now)
        if user is not None:
            break
    preview, from_query = None, False
    if tokens.preview_query is not None:
        preview = verifier.verify_preview(tokens.preview_query, now)
        from_query = preview is not None
    if preview is None and tokens.preview_cookie is not None:
        preview = verifier.verify_preview(tokens.preview_cookie, now)
    return Identity(user, preview, from_query)
