"""The values every step passes on are immutable: the record cache and the answer cache hand the very
same objects to every request, so no request may change what the next one sees."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.models import (
    AccessList,
    AccessRequest,
    Action,
    AssetRecord,
    Decision,
    HostKind,
    Identity,
    PreviewIdentity,
    Replacement,
    ReplacementStatus,
    ServeOptions,
    UserIdentity,
)

USER = UserIdentity("u1", "org-1", frozenset({"finance"}), 1.0, 31.0)
RECORD = AssetRecord("a1", 1, "objects/a1", "f.pdf", access_limited=AccessList(users=("u1",)))
VALUES = {
    "request": (
        AccessRequest("GET", "https", "h", HostKind.LIVE, "a1", "f.pdf", "/media/a1/f.pdf"),
        "asset_id",
    ),
    "user": (USER, "sub"),
    "preview": (PreviewIdentity("b1", False, 1.0, 31.0), "draft_asset_manager_access"),
    "identity": (Identity(user=USER), "user"),
    "access_list": (RECORD.access_limited, "users"),
    "record": (RECORD, "draft"),
    "replacement": (Replacement(ReplacementStatus.LIVE, RECORD), "final"),
    "serve_options": (ServeOptions(), "disposition"),
    "decision": (Decision(Action.SERVE, 302, "serve", "rev"), "private"),
}


@pytest.mark.parametrize(("value", "field"), VALUES.values(), ids=VALUES.keys())
def test_values_cannot_be_changed_once_made(value: object, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)


def test_a_decision_is_private_unless_said_otherwise() -> None:
    """Deny by default for caching too: a decision that does not say is never publicly cacheable."""
    assert Decision(Action.DENY, 404, "any", "rev").private is True
