"""Step two: raw tokens → Identity. A rejected token is simply no token (never an error)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.models import ANONYMOUS, Identity, PreviewIdentity, UserIdentity
from gateway.parsing import RawTokens
from gateway.tokens import Rejection, TokenVerifier


def identify(tokens: RawTokens, verifier: TokenVerifier, now: float) -> Identity:
    """Every token is tried in order until one is accepted; those refused on the way are noted with
    their reason, so an operator can tell "no token" from "a token that did not pass"."""
    if not tokens.user and tokens.preview_query is None and tokens.preview_cookie is None:
        return ANONYMOUS
    rejected: list[tuple[str, str]] = []
    user = None
    for candidate in tokens.user:
        checked = verifier.check("user", candidate, now)
        if isinstance(checked, UserIdentity):
            user = checked
            break
        rejected.append(("user", _reason(checked)))
    preview, from_query = None, False
    for presented, in_query in ((tokens.preview_query, True), (tokens.preview_cookie, False)):
        if presented is None:
            continue
        checked = verifier.check("preview", presented, now)
        if isinstance(checked, PreviewIdentity):
            preview, from_query = checked, in_query
            break
        rejected.append(("preview", _reason(checked)))
    return Identity(user, preview, from_query, tuple(rejected))


def _reason(checked: object) -> str:
    return checked.reason if isinstance(checked, Rejection) else "malformed"


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


def identify_trying(
    tokens: RawTokens, extra: tuple[str, ...], verifier: TokenVerifier, now: float
) -> Identity:
    """`identify`, with each of `extra` also tried as a user token (before the request's own) and,
    when the request carries no valid preview token, as a preview token: whichever verifies counts.
    For `explain`, where an operator hands over tokens without saying what they are."""
    identity = identify(
        RawTokens(extra + tokens.user, tokens.preview_query, tokens.preview_cookie), verifier, now
    )
    if identity.preview is not None:
        return identity
    preview = next((p for p in (verifier.verify_preview(t, now) for t in extra) if p), None)
    return Identity(identity.user, preview, False)
