"""Evaluation edges that the shipped policy never reaches: deny by default (404, never a 403 that
would confirm the file exists), and rules that would serve or redirect with nothing to act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.models import ANONYMOUS, AccessRequest, Action, AssetRecord, Decision, HostKind
from gateway.policy.evaluation import DEFAULT_DENY, decide, explain
from gateway.policy.language import Policy
from gateway.policy.loading import load_policy
from gateway.urls import asset_path

NOW = 1_700_000_000.0


def policy_of(directory: Path, *rules: str) -> Policy:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policy.yaml").write_text("rules:\n" + "".join(rules), encoding="utf-8")
    return load_policy(directory)


def request(host_kind: HostKind = HostKind.LIVE) -> AccessRequest:
    return AccessRequest("GET", "https", "h", host_kind, "a1", "f.pdf", asset_path("a1", "f.pdf"))


RECORD = AssetRecord("a1", 1, "objects/a1", "f.pdf")


def test_no_matching_rule_is_404_by_default_deny(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "  - name: live_only\n    when: {host: live}\n    then: serve\n")
    for record in (RECORD, None):
        expected = Decision(Action.DENY, 404, DEFAULT_DENY, policy.revision, private=True)
        assert decide(request(HostKind.DRAFT), ANONYMOUS, record, policy, NOW) == expected
        decision, trace = explain(request(HostKind.DRAFT), ANONYMOUS, record, policy, NOW)
        assert decision == expected
        assert [(step.rule, step.matched) for step in trace] == [("live_only", False)]


@pytest.mark.parametrize("outcome", ["serve", "redirect_to_current_filename", "redirect_to_url"])
def test_a_rule_that_acts_on_a_missing_record_denies_with_404(tmp_path: Path, outcome: str) -> None:
    """A rule that forgot `record: present` has nothing to serve, rename or redirect to."""
    policy = policy_of(tmp_path, f"  - name: careless\n    then: {outcome}\n")
    decision = decide(request(), ANONYMOUS, None, policy, NOW)
    assert (decision.action, decision.status, decision.rule) == (Action.DENY, 404, "careless")


def test_redirect_to_url_without_a_url_denies_with_404(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "  - name: careless\n    then: redirect_to_url\n")
    decision = decide(request(), ANONYMOUS, RECORD, policy, NOW)
    assert (decision.action, decision.status, decision.rule) == (Action.DENY, 404, "careless")
