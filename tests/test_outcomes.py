"""The table of outcomes (gateway.outcomes) is complete and agrees with everything that reads it:
every Action has a row and a renderer, statuses are what the policy language gives, and a row
that says "needs a record" really denies without one."""

from __future__ import annotations

import pytest

from gateway.models import AccessRequest, Action, AssetRecord, Decision, HostKind
from gateway.outcomes import OUTCOMES, answer_status, target
from gateway.responses import Responder
from gateway.settings import LegacySettings
from gateway.urls import asset_path


def test_every_action_has_a_row_and_a_renderer() -> None:
    assert set(OUTCOMES) == set(Action)
    for action, spec in OUTCOMES.items():
        assert callable(getattr(Responder, spec.renderer, None)), action


def test_only_answers_that_depend_on_nothing_outside_the_key_are_cacheable() -> None:
    # A replacement redirect depends on other records; a preview cookie's Max-Age counts down; a
    # placeholder is only decided on the legacy route, which the answer cache never serves.
    assert {a for a, spec in OUTCOMES.items() if not spec.cacheable} == {
        Action.REDIRECT_TO_REPLACEMENT,
        Action.PREVIEW_COOKIE,
        Action.REDIRECT_TO_PLACEHOLDER,
    }


@pytest.mark.parametrize(
    ("decision", "delivery", "status"),
    [
        (Decision(Action.SERVE, 302, "r", "rev"), "redirect", 302),
        (Decision(Action.SERVE, 302, "r", "rev"), "accel", 200),
        (Decision(Action.SERVE, 302, "r", "rev", not_modified=True), "accel", 304),
        (Decision(Action.DENY, 410, "r", "rev"), "redirect", 410),
        (Decision(Action.REDIRECT_TO_REPLACEMENT, 301, "r", "rev"), "accel", 301),
    ],
)
def test_answer_status(decision: Decision, delivery: str, status: int) -> None:
    assert answer_status(decision, delivery) == status


def _request(filename: str) -> AccessRequest:
    return AccessRequest("GET", "https", "h", HostKind.LIVE, "a1", filename, f"/media/a1/{filename}")


def test_targets_name_what_the_responder_redirects_to() -> None:
    record = AssetRecord("a1", 1, "k", "new name.pdf", redirect_url="https://www.example.org/x")
    final = AssetRecord("b2", 1, "k2", "b.pdf")
    request = _request("old.pdf")
    assert target(Decision(Action.REDIRECT_TO_CURRENT_FILENAME, 302, "r", "v"), record, request) == (
        asset_path("a1", "new name.pdf")
    )
    assert target(Decision(Action.REDIRECT_TO_URL, 302, "r", "v"), record, request) == (
        "https://www.example.org/x"
    )
    replaced = Decision(Action.REDIRECT_TO_REPLACEMENT, 301, "r", "v", replacement=final)
    assert target(replaced, record, request) == "/media/b2/b.pdf"
    assert target(Decision(Action.SERVE, 302, "r", "v"), record, request) is None
    assert target(Decision(Action.REDIRECT_TO_URL, 302, "r", "v"), None, request) is None


def test_the_placeholder_target_depends_on_the_file_type_and_the_legacy_settings() -> None:
    record = AssetRecord("a1", 1, "k", "plan.pdf")
    decision = Decision(Action.REDIRECT_TO_PLACEHOLDER, 302, "r", "v")
    defaults = LegacySettings()
    assert target(decision, record, _request("plan.pdf")) == defaults.placeholder
    assert target(decision, record, _request("map.PNG")) == defaults.image_placeholder
    configured = LegacySettings(placeholder="/elsewhere", image_placeholder="/elsewhere.png")
    assert target(decision, record, _request("plan.pdf"), configured) == "/elsewhere"
    assert target(decision, record, _request("map.jpg"), configured) == "/elsewhere.png"
