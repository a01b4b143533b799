"""The facts a policy condition can ask about one request. Each condition is a small pure function of
(request, identity, record, replacement, settings that change meaning), evaluated lazily by rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.models import (
    ASSET_STATES,
    NO_REPLACEMENT,
    AccessRequest,
    AssetRecord,
    Identity,
    Replacement,
    ReplacementStatus,
)


@dataclass(frozen=True, slots=True)
class Facts:
    request: AccessRequest
    identity: Identity
    record: AssetRecord | None
    replacement: Replacement
    login_configured: bool


def about_final_replacement(facts: Facts) -> Facts | None:
    """The same request and requester, asked about the record at the end of the replacement chain
    as if it had been requested (None when the chain has no end). A redirect may name a file only
    when the requester could open it, so a policy needs every record condition about that file."""
    final = facts.replacement.final
    if final is None:
        return None
    return Facts(facts.request, facts.identity, final, NO_REPLACEMENT, facts.login_configured)


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    """How a condition's expected value is written and how its actual value is read."""

    description: str
    read: Callable[[Facts], object]
    choices: tuple[str, ...] | None = None  # None: a true/false condition
    needs_record: bool = False  # never matches (true or false) when the record is missing
    takes_list: bool = False  # the value is a list of free-form names matched by intersection


def _filename_status(facts: Facts) -> str:
    record = facts.record
    assert record is not None
    if facts.request.legacy_path is not None:
        return "current"  # a legacy URL names its file by the whole path (DESIGN 2.8)
    if facts.request.filename == record.filename:
        return "current"
    if facts.request.filename in record.filename_history:
        return "previous"
    return "unknown"


def _preview_listed(facts: Facts) -> bool:
    preview, record = facts.identity.preview, facts.record
    return preview is not None and record is not None and preview.sub in record.auth_bypass_ids


def _user_admitted(facts: Facts) -> bool:
    user, record = facts.identity.user, facts.record
    return user is not None and record is not None and record.access_limited.admits(user)


def _user_groups(facts: Facts) -> frozenset[str]:
    user = facts.identity.user
    return user.groups if user is not None else frozenset()


def _user_org(facts: Facts) -> frozenset[str]:
    user = facts.identity.user
    return frozenset((user.org,)) if user is not None and user.org is not None else frozenset()


def _record(facts: Facts) -> AssetRecord:
    assert facts.record is not None  # guarded by needs_record
    return facts.record


CONDITIONS: dict[str, ConditionSpec] = {
    "host": ConditionSpec(
        "which configured host list the request's Host is in",
        lambda f: f.request.host_kind._value_,  # .value is a Python-level descriptor: 8 reads a request
        choices=("live", "draft", "other"),
    ),
    "method": ConditionSpec("the HTTP method", lambda f: f.request.method, choices=("GET", "HEAD")),
    "record": ConditionSpec(
        "whether the asset id has a record",
        lambda f: "missing" if f.record is None else "present",
        choices=("present", "missing"),
    ),
    "deleted": ConditionSpec("the record is deleted", lambda f: _record(f).deleted, needs_record=True),
    "draft": ConditionSpec("the record is a draft", lambda f: _record(f).draft, needs_record=True),
    "state": ConditionSpec(
        "the record's virus-scan/upload state",
        lambda f: _record(f).state,
        choices=ASSET_STATES,
        needs_record=True,
    ),
    "access_limited": ConditionSpec(
        "the record lists users, organisations or groups",
        lambda f: _record(f).access_limited.limited,
        needs_record=True,
    ),
    "replacement": ConditionSpec(
        "where the record's replacement chain ends",
        lambda f: f.replacement.status._value_,
        choices=tuple(s.value for s in ReplacementStatus),
        needs_record=True,
    ),
    "filename": ConditionSpec(
        "the requested filename is the record's current one, a previous one, or unknown",
        _filename_status,
        choices=("current", "previous", "unknown"),
        needs_record=True,
    ),
    "redirect_url": ConditionSpec(
        "the record has a redirect_url",
        lambda f: _record(f).redirect_url is not None,
        needs_record=True,
    ),
    "any_token": ConditionSpec(
        "a valid user or preview token came with the request", lambda f: not f.identity.anonymous
    ),
    "user_token": ConditionSpec("a valid user token came", lambda f: f.identity.user is not None),
    "preview_token": ConditionSpec("a valid preview token came", lambda f: f.identity.preview is not None),
    "preview_token_in_query": ConditionSpec(
        "the valid preview token came in the URL's query (a freshly opened preview link)",
        lambda f: f.identity.preview is not None and f.identity.preview_from_query,
    ),
    "preview_listed": ConditionSpec(
        "the preview token's sub is in the record's auth_bypass_ids",
        _preview_listed,
        needs_record=True,
    ),
    "preview_draft_access": ConditionSpec(
        "the preview token carries draft_asset_manager_access: true",
        lambda f: f.identity.preview is not None and f.identity.preview.draft_asset_manager_access,
    ),
    "user_admitted": ConditionSpec(
        "a valid user token whose sub, org or one of groups is in the record's access lists "
        "(any user token when the record is not limited)",
        _user_admitted,
        needs_record=True,
    ),
    "user_groups": ConditionSpec(
        "the user token's groups include at least one of the listed names",
        _user_groups,
        takes_list=True,
    ),
    "user_org": ConditionSpec(
        "the user token's org is one of the listed names",
        _user_org,
        takes_list=True,
    ),
    "login_configured": ConditionSpec("login.url is set", lambda f: f.login_configured),
    "route": ConditionSpec(
        "which URL form the request used: /media/{id}/{filename} or a legacy /government/uploads/ path",
        lambda f: f.request.route,
        choices=("media", "legacy"),
    ),
}
