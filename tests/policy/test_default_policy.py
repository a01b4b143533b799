"""The shipped policy (`policies/default.yaml`, DESIGN 2.6): its own decision table, run case by case,
and Hypothesis properties of `decide()` that must hold whatever the request, identity and record."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.models import (
    ANONYMOUS,
    NO_REPLACEMENT,
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
    UserIdentity,
)
from gateway.policy.cases import CaseResult, PolicyCase, parse_cases, run_cases
from gateway.policy.evaluation import DEFAULT_DENY, decide, explain
from gateway.policy.loading import load_policy
from gateway.urls import asset_path

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"
POLICY = load_policy(POLICY_DIR)
CASES, CASE_PROBLEMS = parse_cases(POLICY)
RULE_NAMES = {rule.name for rule in POLICY.rules} | {DEFAULT_DENY}
NOW = 1_700_000_000.0
T = TypeVar("T")


# ---- the decision table written in the policy file


def test_policy_loads_without_warnings_and_its_cases_parse() -> None:
    assert POLICY.warnings == ()
    assert [str(p) for p in CASE_PROBLEMS] == []
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES), "case names must be unique"


def describe_failure(result: CaseResult) -> str:
    case = result.case
    rows = [f"{case.name} ({case.file}:{case.line})"]
    for key, wanted in case.expect.items():
        got = result.got.get(key)
        rows.append(f"  {'  ' if got == wanted else '!!'} {key}: expected {wanted!r}, got {got!r}")
    rows.append("  rule trace:")
    rows.extend(
        f"    {'MATCH' if step.matched else 'skip '} {step.rule} ({step.where}): {step.why}"
        for step in result.trace
    )
    return "\n".join(rows)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_default_policy_case(case: PolicyCase) -> None:
    (result,) = run_cases(POLICY, [case])
    assert result.passed, describe_failure(result)


# ---- properties of decide() with the shipped policy

SUBS = ["u1", "u2", "editor-1"]
ORGS = ["org-1", "org-2"]
GROUPS = ["finance", "hr", "editors"]
BYPASS = ["b1", "b2", "anyone"]
FILENAME = "report.pdf"
HISTORY = ["old.pdf", "older.pdf"]


def subset(names: list[str]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(names), unique=True, max_size=len(names)).map(tuple)


def mostly(usual: T, *rare: T) -> st.SearchStrategy[T]:
    """`usual` three times in four: most generated situations get past the early rules, so the late
    ones (access lists, filenames, serve) are reached often enough for the properties to bite."""
    return st.sampled_from([usual] * (3 * len(rare)) + list(rare))


users = st.builds(
    UserIdentity,
    sub=st.sampled_from(SUBS),
    org=st.one_of(st.none(), st.sampled_from(ORGS)),
    groups=subset(GROUPS).map(frozenset),
    expires_at=st.floats(NOW + 1, NOW + 86_400),
    valid_until=st.floats(NOW + 1, NOW + 86_400),
)
previews = st.builds(
    PreviewIdentity,
    sub=st.sampled_from(BYPASS),
    draft_asset_manager_access=st.booleans(),
    expires_at=st.floats(NOW + 1, NOW + 86_400),
    valid_until=st.floats(NOW + 1, NOW + 86_400),
)
identities = st.one_of(
    st.just(ANONYMOUS),
    st.builds(Identity, user=users),
    st.builds(Identity, preview=previews, preview_from_query=mostly(False, True)),
    st.builds(Identity, user=users, preview=previews, preview_from_query=mostly(False, True)),
)
access_lists = st.one_of(
    st.just(AccessList()),
    st.builds(AccessList, users=subset(SUBS), organisations=subset(ORGS), groups=subset(GROUPS)),
)


def records(asset_id: str) -> st.SearchStrategy[AssetRecord]:
    return st.builds(
        AssetRecord,
        id=st.just(asset_id),
        version=st.integers(1, 10),
        object_key=st.just(f"objects/{asset_id}"),
        filename=st.just(FILENAME),
        filename_history=subset(HISTORY),
        state=mostly("uploaded", "unscanned", "clean", "infected"),
        draft=st.booleans(),
        deleted=mostly(False, True),
        redirect_url=mostly(None, "https://www.example.org/elsewhere"),
        replacement_id=mostly(None, "a2"),
        access_limited=access_lists,
        auth_bypass_ids=subset(BYPASS[:2]),
        etag=st.one_of(st.none(), st.just('"v1"')),
    )


@st.composite
def replacements(draw: st.DrawFn) -> Replacement:
    status = draw(mostly(*ReplacementStatus))
    if status is ReplacementStatus.NONE:
        return NO_REPLACEMENT
    final = None
    if status in (ReplacementStatus.LIVE, ReplacementStatus.NOT_LIVE):
        final = draw(st.one_of(records("a2"), st.none()))
    return Replacement(status, final)


@st.composite
def requests(draw: st.DrawFn) -> AccessRequest:
    host_kind = draw(
        st.sampled_from([HostKind.LIVE, HostKind.LIVE, HostKind.DRAFT, HostKind.DRAFT, HostKind.OTHER])
    )
    filename = draw(mostly(FILENAME, *HISTORY, "other.pdf"))
    return AccessRequest(
        method=draw(st.sampled_from(["GET", "HEAD"])),
        scheme=draw(st.sampled_from(["http", "https"])),
        host=f"{host_kind.value}.example.org",
        host_kind=host_kind,
        asset_id="a1",
        filename=filename,
        path=asset_path("a1", filename),
        query=draw(st.sampled_from(["", "page=2"])),
        if_none_match=draw(st.one_of(st.none(), st.just('"v1"'), st.just('"v0"'))),
    )


SITUATIONS = {
    "request": requests(),
    "identity": identities,
    "record": st.one_of(records("a1"), st.none()),
    "replacement": replacements(),
    "login_configured": st.booleans(),
}


def run_decide(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    replacement: Replacement,
    login_configured: bool,
) -> Decision:
    decision = decide(
        request, identity, record, POLICY, NOW, replacement=replacement, login_configured=login_configured
    )
    assert isinstance(decision, Decision)
    assert decision.rule in RULE_NAMES
    assert decision.revision == POLICY.revision
    return decision


def listed(access: AccessList, user: UserIdentity) -> bool:
    """The oracle for access lists, written from DESIGN 2.6 steps 5 and 6 ("the user's `sub`, `org`
    or one of `groups` is listed"), not with `AccessList.admits`, the code under test: the user's
    names and the list's entries as (kind, name) pairs, and whether the two sets meet."""
    names = {("user", user.sub)} | {("group", group) for group in user.groups}
    if user.org is not None:
        names.add(("organisation", user.org))
    entries = (
        {("user", sub) for sub in access.users}
        | {("organisation", org) for org in access.organisations}
        | {("group", group) for group in access.groups}
    )
    return not names.isdisjoint(entries)


def check_invariants(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    replacement: Replacement,
    login_configured: bool,
) -> Decision:
    """What must hold of any decision of the shipped policy (DESIGN 2.6)."""
    decision = run_decide(request, identity, record, replacement, login_configured)
    draft_host = request.host_kind is HostKind.DRAFT
    limited = record is not None and record.access_limited.limited
    if decision.action is not Action.SERVE:
        assert decision.serve is None and not decision.not_modified
        return decision
    # Everything below is about a file being served.
    assert record is not None
    assert request.host_kind is not HostKind.OTHER
    assert not record.deleted
    assert record.state == "uploaded"
    assert record.filename == request.filename
    assert record.redirect_url is None
    assert not (record.draft and request.host_kind is HostKind.LIVE)
    assert not (identity.anonymous and (limited or draft_host))
    if limited:
        assert identity.user is not None and listed(record.access_limited, identity.user)
    if draft_host:
        preview = identity.preview
        assert (
            (preview is not None and preview.sub in record.auth_bypass_ids)
            or (preview is not None and preview.draft_asset_manager_access and not limited)
            or (identity.user is not None and (not limited or listed(record.access_limited, identity.user)))
        )
    assert decision.private is (draft_host or limited)
    assert decision.not_modified == (request.if_none_match == '"v1"' and record.etag == '"v1"')
    return decision


@settings(max_examples=300)
@given(**SITUATIONS)
def test_decide_invariants(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    replacement: Replacement,
    login_configured: bool,
) -> None:
    check_invariants(request, identity, record, replacement, login_configured)


# The same invariants with the one fact under test held fixed, so that each "never served" is
# checked on a few hundred situations that would otherwise be served, not on a handful.


def with_record(**fields: object) -> st.SearchStrategy[AssetRecord]:
    return records("a1").map(lambda record: replace(record, **fields))


limited_lists = st.builds(
    AccessList, users=subset(SUBS), organisations=subset(ORGS), groups=subset(GROUPS)
).filter(lambda access: access.limited)
on_host = {kind: requests().map(lambda r, kind=kind: replace(r, host_kind=kind)) for kind in HostKind}
FOCUSED = {
    "deleted": {**SITUATIONS, "record": with_record(deleted=True)},
    "not_uploaded": {
        **SITUATIONS,
        "record": st.tuples(records("a1"), st.sampled_from(["unscanned", "clean", "infected"])).map(
            lambda pair: replace(pair[0], state=pair[1])
        ),
    },
    "anonymous_limited": {
        **SITUATIONS,
        "identity": st.just(ANONYMOUS),
        "record": st.tuples(records("a1"), limited_lists).map(
            lambda pair: replace(pair[0], access_limited=pair[1])
        ),
    },
    "anonymous_draft_host": {
        **SITUATIONS,
        "identity": st.just(ANONYMOUS),
        "request": on_host[HostKind.DRAFT],
    },
    "any_identity_draft_host": {**SITUATIONS, "request": on_host[HostKind.DRAFT]},
    "any_identity_limited": {
        **SITUATIONS,
        "request": on_host[HostKind.LIVE],
        "record": st.tuples(records("a1"), limited_lists).map(
            lambda pair: replace(pair[0], access_limited=pair[1])
        ),
    },
}


@pytest.mark.parametrize("focus", list(FOCUSED))
def test_decide_invariants_focused(focus: str) -> None:
    @settings(max_examples=200)
    @given(**FOCUSED[focus])
    def check(
        request: AccessRequest,
        identity: Identity,
        record: AssetRecord | None,
        replacement: Replacement,
        login_configured: bool,
    ) -> None:
        decision = check_invariants(request, identity, record, replacement, login_configured)
        if focus in ("deleted", "not_uploaded") or focus.startswith("anonymous"):
            assert decision.action is not Action.SERVE

    check()


@settings(max_examples=300)
@given(**SITUATIONS, expired_by=st.floats(0.001, 1e9))
def test_expired_tokens_count_for_nothing(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    replacement: Replacement,
    login_configured: bool,
    expired_by: float,
) -> None:
    """An identity whose tokens have all expired is decided exactly as an anonymous one."""
    past = NOW - expired_by
    expired = Identity(
        None
        if identity.user is None
        else UserIdentity(identity.user.sub, identity.user.org, identity.user.groups, past, past),
        None
        if identity.preview is None
        else PreviewIdentity(identity.preview.sub, identity.preview.draft_asset_manager_access, past, past),
        identity.preview_from_query,
    )
    assert run_decide(request, expired, record, replacement, login_configured) == run_decide(
        request, ANONYMOUS, record, replacement, login_configured
    )


@settings(max_examples=300)
@given(**SITUATIONS)
def test_explain_agrees_with_decide(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    replacement: Replacement,
    login_configured: bool,
) -> None:
    decision = run_decide(request, identity, record, replacement, login_configured)
    explained, trace = explain(
        request, identity, record, POLICY, NOW, replacement=replacement, login_configured=login_configured
    )
    assert explained == decision
    assert [step.matched for step in trace[:-1]] == [False] * (len(trace) - 1)
    if decision.rule == DEFAULT_DENY:
        assert not any(step.matched for step in trace)
    else:
        assert trace[-1].matched and trace[-1].rule == decision.rule
        assert [step.rule for step in trace] == [rule.name for rule in POLICY.rules][: len(trace)]


def test_deleted_record_is_never_served_whoever_asks() -> None:
    """A plain table over every identity kind, as a fixed complement to the properties above."""
    record = AssetRecord("a1", 1, "objects/a1", FILENAME, deleted=True, auth_bypass_ids=("b1",))
    user = UserIdentity("u1", "org-1", frozenset({"finance"}), NOW + 60, NOW + 60)
    preview = PreviewIdentity("b1", True, NOW + 60, NOW + 60)
    for host_kind in HostKind:
        request = AccessRequest("GET", "https", "h", host_kind, "a1", FILENAME, asset_path("a1", FILENAME))
        for identity in (ANONYMOUS, Identity(user=user), Identity(preview=preview), Identity(user, preview)):
            decision = run_decide(request, identity, record, NO_REPLACEMENT, True)
            assert decision.action is not Action.SERVE
            if host_kind is not HostKind.OTHER:
                assert (decision.action, decision.status) == (Action.DENY, 410)
