"""Which sessions a revocation ends: one `sid`, or every session of a `sub` issued until then."""

from __future__ import annotations

from gateway.models import UserIdentity
from gateway.oidc.revocation import RevokedSessions


def session(sub: str, sid: str | None, issued_at: float) -> UserIdentity:
    expires = issued_at + 3600
    return UserIdentity(sub, None, frozenset(), expires, expires, sid=sid, issued_at=issued_at)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_sid_revocation_ends_that_session_only() -> None:
    revoked = RevokedSessions(3600)
    await revoked.revoke(sid="s-1")
    assert revoked.is_revoked(session("ada", "s-1", 900))
    assert not revoked.is_revoked(session("ada", "s-2", 900))


async def test_a_sub_revocation_ends_the_sessions_made_until_then() -> None:
    clock = Clock()
    revoked = RevokedSessions(3600, clock=clock)
    await revoked.revoke(sub="ada")
    assert revoked.is_revoked(session("ada", "s-1", 999))
    assert not revoked.is_revoked(session("ada", "s-2", 1001))  # signed in again afterwards
    assert not revoked.is_revoked(session("bob", "s-3", 999))


async def test_tokens_without_a_sid_are_not_sessions() -> None:
    revoked = RevokedSessions(3600)
    await revoked.revoke(sub="ada")
    assert not revoked.is_revoked(session("ada", None, 0))  # an IdP token: it lives out its exp
