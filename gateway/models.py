"""Immutable values that travel through one request: what was asked, who asked, what the file is,
and what was decided. Built once, never mutated, safe to cache and share between tasks."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class HostKind(enum.Enum):
    LIVE = "live"
    DRAFT = "draft"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A parsed request for `/media/{asset_id}/{filename}` or a legacy `/government/uploads/...`
    path. `query` never contains the preview token."""

    method: str
    scheme: str
    host: str  # as the client sent it, port included; lower-cased
    host_kind: HostKind
    asset_id: str
    filename: str
    path: str  # the raw request path, percent-encoded as received
    query: str = ""  # the raw query string with the preview token parameter removed
    if_none_match: str | None = None
    route: str = "media"  # or "legacy" (DESIGN 2.8)
    # legacy route: the normalised path, the key of the index; `asset_id` is filled in by the lookup
    legacy_path: str | None = None


@dataclass(frozen=True, slots=True)
class UserIdentity:
    sub: str
    org: str | None
    groups: frozenset[str]
    expires_at: float  # the token's `exp`: what a cookie made from it may live to
    # `exp` plus the configured leeway: the one notion of "still valid" that the verifier, the
    # policy, the answer cache and every other check use (see `valid_at`).
    valid_until: float
    sid: str | None = None  # set for the gateway's own sessions (sign-in), which can be revoked
    issued_at: float | None = None

    def valid_at(self, now: float) -> bool:
        return now <= self.valid_until


@dataclass(frozen=True, slots=True)
class PreviewIdentity:
    sub: str
    draft_asset_manager_access: bool
    expires_at: float  # as UserIdentity
    valid_until: float

    def valid_at(self, now: float) -> bool:
        return now <= self.valid_until


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking. Both tokens may be present at once (a signed-in editor with a preview link)."""

    user: UserIdentity | None = None
    preview: PreviewIdentity | None = None
    preview_from_query: bool = False  # the preview token came in `?token=` (not yet in a cookie)
    # Tokens presented and refused, as (source, reason): "user"/"preview" and a reason from
    # gateway.tokens.REJECTION_REASONS. For logs, metrics and `explain`; never the token itself.
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.user is None and self.preview is None


ANONYMOUS = Identity()


@dataclass(frozen=True, slots=True)
class AccessList:
    users: tuple[str, ...] = ()
    organisations: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def limited(self) -> bool:
        return bool(self.users or self.organisations or self.groups)

    def admits(self, user: UserIdentity) -> bool:
        """True when the user is listed by id, organisation or group (or nothing is limited)."""
        if not self.limited:
            return True
        return (
            user.sub in self.users
            or (user.org is not None and user.org in self.organisations)
            or not user.groups.isdisjoint(self.groups)
        )


# The access list of every record limited to nobody: one shared instance, not one per record.
NO_LIMITS = AccessList()


ASSET_STATES = ("unscanned", "clean", "infected", "uploaded")


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """One file's state as the publishing system last wrote it (DESIGN 2.4)."""

    id: str
    version: int
    object_key: str
    filename: str
    filename_history: tuple[str, ...] = ()
    content_type: str = "application/octet-stream"
    state: str = "uploaded"
    draft: bool = False
    deleted: bool = False
    redirect_url: str | None = None
    replacement_id: str | None = None
    access_limited: AccessList = NO_LIMITS
    auth_bypass_ids: tuple[str, ...] = ()
    parent_document_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    legacy_url_path: str | None = None  # normalised (gateway.legacy); unique among live records
    legacy_etag: str | None = None
    legacy_last_modified: str | None = None

    @property
    def live(self) -> bool:
        """Published: what the live host may show, access limits aside."""
        return not self.draft and not self.deleted


class ReplacementStatus(enum.Enum):
    NONE = "none"  # the record has no replacement_id
    LIVE = "live"  # the end of the chain is published
    NOT_LIVE = "not_live"  # the end of the chain exists but is a draft or deleted
    MISSING = "missing"  # the chain points at an id with no record
    BROKEN = "broken"  # the chain loops or is too long


@dataclass(frozen=True, slots=True)
class Replacement:
    status: ReplacementStatus
    final: AssetRecord | None = None


NO_REPLACEMENT = Replacement(ReplacementStatus.NONE)


class Action(enum.Enum):
    """What the policy decided; `respond` turns each into HTTP."""

    SERVE = "serve"
    DENY = "deny"  # 404, 410 or another error status, no detail
    LOGIN = "login"  # 302 to the configured login URL with return_to
    PREVIEW_COOKIE = "preview_cookie"  # set the preview cookie, 302 to the URL without ?token=
    REDIRECT_TO_REPLACEMENT = "redirect_to_replacement"
    REDIRECT_TO_DRAFT_HOST = "redirect_to_draft_host"
    REDIRECT_TO_CURRENT_FILENAME = "redirect_to_current_filename"
    REDIRECT_TO_URL = "redirect_to_url"
    REDIRECT_TO_PLACEHOLDER = "redirect_to_placeholder"  # legacy files not yet cleared (DESIGN 2.8)


@dataclass(frozen=True, slots=True)
class ServeOptions:
    disposition: str = "inline"  # or "attachment"
    presign_ttl: int | None = None  # seconds; None means the configured s3.presign_ttl


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    status: int
    rule: str
    revision: str
    private: bool = True  # answer must not be stored by shared caches
    not_modified: bool = False  # SERVE only: the client's If-None-Match matches
    serve: ServeOptions | None = None
    replacement: AssetRecord | None = None  # REDIRECT_TO_REPLACEMENT only
