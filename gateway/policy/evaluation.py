"""The decision: a pure, synchronous function of the request, who is asking, the record, the policy
and the time. The first rule whose conditions all hold decides; when none does, the answer is 404."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.models import (
    NO_REPLACEMENT,
    AccessRequest,
    Action,
    AssetRecord,
    Decision,
    HostKind,
    Identity,
    Replacement,
)
from gateway.outcomes import OUTCOMES
from gateway.policy.facts import Facts
from gateway.policy.language import Policy, Rule

DEFAULT_DENY = "default_deny"


def decide(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    policy: Policy,
    now: float,
    *,
    replacement: Replacement = NO_REPLACEMENT,
    login_configured: bool = False,
) -> Decision:
    facts = _facts(request, identity, record, replacement, now, login_configured)
    for rule in policy.rules:
        if rule.when.test(facts):
            return _decision(rule, facts, policy.revision)
    return Decision(Action.DENY, 404, DEFAULT_DENY, policy.revision)


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule: str
    where: str  # file:line
    matched: bool
    why: str


def explain(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    policy: Policy,
    now: float,
    *,
    replacement: Replacement = NO_REPLACEMENT,
    login_configured: bool = False,
) -> tuple[Decision, list[RuleTrace]]:
    """The same decision as `decide`, with every rule up to the deciding one and why it (did not) match."""
    facts = _facts(request, identity, record, replacement, now, login_configured)
    trace = []
    for rule in policy.rules:
        matched, why = rule.when.explain(facts)
        trace.append(RuleTrace(rule.name, f"{rule.file}:{rule.line}", matched, why or "(always)"))
        if matched:
            return _decision(rule, facts, policy.revision), trace
    return Decision(Action.DENY, 404, DEFAULT_DENY, policy.revision), trace


def _facts(
    request: AccessRequest,
    identity: Identity,
    record: AssetRecord | None,
    replacement: Replacement,
    now: float,
    login_configured: bool,
) -> Facts:
    # Defence in depth: an identity whose token has expired since it was cached is no identity
    # (by the verifier's own measure, leeway included).
    if identity.user is not None and not identity.user.valid_at(now):
        identity = Identity(None, identity.preview, identity.preview_from_query)
    if identity.preview is not None and not identity.preview.valid_at(now):
        identity = Identity(identity.user, None, False)
    return Facts(request, identity, record, replacement, login_configured)


def _decision(rule: Rule, facts: Facts, revision: str) -> Decision:
    outcome = rule.outcome
    record = facts.record
    restricted = facts.request.host_kind is not HostKind.LIVE or (
        record is not None and record.access_limited.limited
    )
    if record is None and OUTCOMES[outcome.action].needs_record:
        # A rule that forgot `record: present`: there is nothing to serve or rename, so deny.
        return Decision(Action.DENY, 404, rule.name, revision)
    if outcome.action is Action.SERVE:
        assert record is not None
        return Decision(
            Action.SERVE,
            outcome.status,
            rule.name,
            revision,
            private=restricted or outcome.private,
            not_modified=etag_matches(facts.request.if_none_match, record.etag),
            serve=outcome.serve,
        )
    if outcome.action is Action.REDIRECT_TO_REPLACEMENT:
        final = facts.replacement.final
        if final is None:  # the rule matched a chain with no end: nothing to send the browser to
            return Decision(Action.DENY, 404, rule.name, revision)
        # Only a published, unrestricted file may be named in an answer shared caches keep.
        private = not final.live or final.access_limited.limited
        return Decision(
            outcome.action, outcome.status, rule.name, revision, private=private, replacement=final
        )
    if outcome.action is Action.REDIRECT_TO_URL and (record is None or record.redirect_url is None):
        return Decision(Action.DENY, 404, rule.name, revision)
    if outcome.action is Action.REDIRECT_TO_PLACEHOLDER:
        # Public (a minute) only where the file itself would be: a shared cache must not answer a
        # draft or restricted file's URL for everyone.
        return Decision(outcome.action, outcome.status, rule.name, revision, private=restricted)
    return Decision(outcome.action, outcome.status, rule.name, revision, private=True)


def etag_matches(if_none_match: str | None, etag: str | None) -> bool:
    """RFC 9110 weak comparison of an If-None-Match list against the record's etag."""
    if not if_none_match or not etag:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
