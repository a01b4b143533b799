"""policies/README.md is the ops reference: it must name every condition, value and outcome the
language accepts, and every YAML example in it must load (and its test cases pass)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.models import Action
from gateway.policy.cases import parse_cases, run_cases
from gateway.policy.facts import CONDITIONS
from gateway.policy.language import DENY_STATUSES, SERVE_OPTIONS, FileParser, PolicyFile
from gateway.policy.loading import load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
README = (POLICIES / "README.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)


def _table_row(name: str) -> str:
    row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"policies/README.md has no table row for `{name}`"
    return row


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_every_condition_has_a_row_listing_its_values(name: str) -> None:
    row = _table_row(name)
    spec = CONDITIONS[name]
    if spec.takes_list:
        assert "list of names" in row
    elif spec.choices is None:
        assert "`true`, `false`" in row
    else:
        for choice in spec.choices:
            assert f"`{choice}`" in row, f"value {choice!r} of {name} is not documented"
    assert ("| yes |" in row) == spec.needs_record, f"'needs a record' column is wrong for {name}"


def test_no_condition_is_documented_that_does_not_exist() -> None:
    start = README.index("| condition | values |")
    table = README[start : README.index("\n\n", start)]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    assert documented == list(CONDITIONS)


@pytest.mark.parametrize("outcome", [a.value for a in Action])
def test_every_outcome_is_documented(outcome: str) -> None:
    assert f"| `{outcome}" in README, f"outcome {outcome} has no row in the outcomes table"


def test_serve_options_and_deny_statuses_are_documented() -> None:
    for option in SERVE_OPTIONS:
        _table_row(option)
    for status in DENY_STATUSES:
        assert f"`deny: {status}`" in README


def test_combinators_are_documented() -> None:
    for form in ("any", "all", "not"):
        assert f"| `{form}: " in README


def _parse(text: str) -> PolicyFile:
    parser = FileParser("README.md", text)
    parsed = parser.parse()
    assert parsed is not None and not parser.problems, [str(p) for p in parser.problems]
    return parsed


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.strip().splitlines()[0][:40])
def test_every_yaml_example_is_valid(block: str) -> None:
    if block.startswith("tests:"):
        # A test-case example runs against the shipped policy it was taken from.
        policy = load_policy(POLICIES)
        cases, problems = parse_cases(
            type(policy)(policy.rules, policy.revision, (PolicyFile("README.md", (), _tests(block)),))
        )
        assert not problems and cases
        assert all(result.passed for result in run_cases(policy, cases))
    elif block.startswith("rules:"):
        assert _parse(block).rules
    else:  # a fragment of a rules list
        assert _parse("rules:\n" + block).rules


def _tests(block: str) -> tuple[object, ...]:
    return _parse("rules: [{name: x, then: serve}]\n" + block).tests


def test_the_examples_are_many() -> None:
    assert len(YAML_BLOCKS) >= 5
