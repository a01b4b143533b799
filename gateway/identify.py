"""Step two: raw tokens → Identity. A rejected token is simply no token (never an error)."""

from __future__ import annotations

from collections.abc import Sequence

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


async def learn_user_keys(user_tokens: Sequence[str], verifier: TokenVerifier) -> bool:
    """When a rejected user token names a key no fetched key set has, fetch that set again (at
    most once per 30 s per set: gateway.jwks) and say whether it is worth verifying again. Only
    the first time a new kid is seen does this do I/O; warm requests never get here."""
    learned = False
    for token in user_tokens:
        unknown = verifier.unknown_remote_kid(token)
        if unknown is not None:
            source, kid = unknown
            learned = await source.refresh_for_unknown(kid) or learned
    return learned
