"""The policy language: every broken file is reported as `file:line: message` at the line to fix,
every problem in a file at once; warnings do not stop loading; the revision follows the content."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.models import Action, ServeOptions
from gateway.policy.language import AllOf, AnyOf, Check, NoneOf, PolicyError, Problem
from gateway.policy.loading import load_policy


def lines(*rows: str) -> str:
    """Policy text, one argument per line, so a fixture's line numbers can be read off its row."""
    return "\n".join(rows) + "\n"


def write(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load_problems(directory: Path) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        load_policy(directory)
    problems = caught.value.problems
    assert str(caught.value) == "\n".join(str(p) for p in problems)
    return problems


def assert_problem(problem: Problem, path: Path, line: int, message: str) -> None:
    assert (problem.file, problem.line, problem.warning) == (str(path), line, False), str(problem)
    assert str(problem) == f"{path}:{line}: {problem.message}"
    assert problem.message.startswith(message), problem.message


# (fixture, line of the problem, start of its message). `{file}` in a message is the fixture's path.
BROKEN = {
    "invalid_yaml": (
        lines(
            "rules:",
            "  - name: a",
            "    then: serve",
            "  - name: b",
            "    then: [serve",  # 5: never closed
        ),
        5,
        "not valid YAML: expected ',' or ']'",
    ),
    "tab_indent": (
        lines("rules:", "  - name: a", "    then: serve", "\tbad: 1"),
        4,
        "not valid YAML: found character '\\t' that cannot start any token",
    ),
    "python_tag": (
        lines("rules:", "  - name: a", "    when: {host: live}", "    then: !!python/object:os.system x"),
        4,
        "not valid YAML: could not determine a constructor for the tag",
    ),
    "unhashable_key": (
        lines("rules:", "  - name: a", "    when: {[host]: live}", "    then: serve"),
        3,
        "not valid YAML: found unhashable key",
    ),
    "empty_file": ("", 1, "empty policy file: expected a mapping with 'rules'"),
    "only_comments": (lines("# nothing here", ""), 1, "empty policy file"),
    "top_level_list": (
        lines("- name: a", "  then: serve"),
        1,
        "expected a mapping with 'rules' (and optionally 'description', 'tests')",
    ),
    "top_level_scalar": (lines("# a comment", "serve"), 2, "expected a mapping with 'rules'"),
    "missing_rules": (lines("description: nothing else"), 1, "missing 'rules': a list of rules"),
    "empty_rules": (lines("description: x", "rules: []"), 2, "'rules' must be a non-empty list of rules"),
    "unknown_top_level_field": (
        lines("description: x", "rules:", "  - name: a", "    then: serve", "extra: 1"),
        5,
        "unknown field 'extra' (expected one of description, rules, tests)",
    ),
    "rule_not_a_mapping": (
        lines("rules:", "  - name: a", "    then: serve", "  - serve"),
        4,
        "a rule must be a mapping with 'name', 'when' and 'then'",
    ),
    "rule_without_name": (
        lines(
            "rules:",
            "  - name: first",
            "    when: {host: live}",
            "    then: serve",
            "  - when: {host: draft}",  # 5
            "    then: serve",
        ),
        5,
        "rule has no 'name'",
    ),
    "name_not_snake_case": (
        lines("rules:", "  - description: x", "    name: BadName", "    then: serve"),
        3,
        "rule name 'BadName' must be snake_case: [a-z][a-z0-9_]*",
    ),
    "name_not_a_string": (lines("rules:", "  - name: 12", "    then: serve"), 2, "name must be a string"),
    "rule_without_then": (
        lines("rules:", "  - name: a", "    when: {host: live}"),
        2,
        "rule 'a' has no 'then' outcome",
    ),
    "unknown_rule_field": (
        lines("rules:", "  - name: a", "    if: {host: live}", "    then: serve"),
        3,
        "unknown field 'if' (expected one of description, name, then, when)",
    ),
    "duplicate_rule_name": (
        lines(
            "rules:",
            "  - name: same",
            "    when: {host: live}",
            "    then: serve",
            "  - name: same",  # 5
            "    when: {host: draft}",
            "    then: serve",
        ),
        5,
        "rule 'same' is already defined at {file}:2",
    ),
    "unknown_condition": (
        lines(
            "rules:",
            "  - name: a",
            "    when:",
            "      host: live",
            "      colour: red",  # 5
            "    then: serve",
        ),
        5,
        "unknown condition 'colour' (expected one of any, all, not, host, method, record,",
    ),
    "final_replacement_not_a_mapping": (
        lines("rules:", "  - name: a", "    when:", "      final_replacement: true", "    then: serve"),
        4,
        "conditions must be a mapping like {host: draft, draft: true}",
    ),
    "final_replacement_bad_inner_condition": (
        lines(
            "rules:", "  - name: a", "    when:", "      final_replacement: {draft: maybe}", "    then: serve"
        ),
        4,
        "draft: expected true or false, got 'maybe'",
    ),
    "duplicate_condition": (
        lines(
            "rules:", "  - name: a", "    when:", "      host: live", "      host: draft", "    then: serve"
        ),
        5,
        "duplicate condition 'host'",
    ),
    "conditions_not_a_mapping": (
        lines("rules:", "  - name: a", "    when: [host]", "    then: serve"),
        3,
        "conditions must be a mapping like {host: draft, draft: true}",
    ),
    "bool_condition_given_a_string": (
        lines("rules:", "  - name: a", "    when:", '      draft: "yes"', "    then: serve"),
        4,
        "draft: expected true or false, got 'yes'",
    ),
    "bool_condition_given_a_list": (
        lines("rules:", "  - name: a", "    when:", "      draft: [true, false]", "    then: serve"),
        4,
        "draft: expected true or false, got [True, False]",
    ),
    "bad_choice": (
        lines("rules:", "  - name: a", "    when: {host: staging}", "    then: serve"),
        3,
        "host: expected one of live, draft, other, got 'staging'",
    ),
    "bad_choice_in_list": (
        lines("rules:", "  - name: a", "    when:", "      state: [clean, dirty]", "    then: serve"),
        4,
        "state: expected one of unscanned, clean, infected, uploaded, got 'dirty'",
    ),
    "empty_value_list": (
        lines("rules:", "  - name: a", "    when: {host: []}", "    then: serve"),
        3,
        "host: the list of values is empty",
    ),
    "names_condition_given_a_number": (
        lines("rules:", "  - name: a", "    when: {user_groups: [finance, 7]}", "    then: serve"),
        3,
        "user_groups: expected a name or a list of names",
    ),
    "unknown_outcome": (
        lines("rules:", "  - name: a", "    then: explode"),
        3,
        "unknown outcome 'explode' (expected one of serve, deny, login,",
    ),
    "deny_without_status": (
        lines("rules:", "  - name: a", "    then: deny"),
        3,
        "'deny' needs a status: write {deny: 404}",
    ),
    "deny_500": (
        lines("rules:", "  - name: a", "    then: {deny: 500}"),
        3,
        "deny: expected a status in (403, 404, 410), got 500",
    ),
    "outcome_with_two_keys": (
        lines("rules:", "  - name: a", "    then: {deny: 404, serve: {}}"),
        3,
        "an outcome is a name like 'serve' or a one-key mapping like {deny: 404}",
    ),
    "options_on_a_plain_outcome": (
        lines("rules:", "  - name: a", "    then:", "      login: {url: x}"),
        4,
        "outcome 'login' takes no options (only 'deny' and 'serve' do)",
    ),
    "serve_option_unknown": (
        lines("rules:", "  - name: a", "    then:", "      serve: {colour: red}"),
        4,
        "unknown field 'colour' (expected one of disposition, presign_ttl, private)",
    ),
    "serve_options_not_a_mapping": (
        lines("rules:", "  - name: a", "    then:", "      serve: [attachment]"),
        4,
        "serve options must be a mapping like {disposition: attachment}",
    ),
    "serve_disposition_unknown": (
        lines("rules:", "  - name: a", "    then:", "      serve:", "        disposition: download"),
        5,
        "disposition: expected inline or attachment",
    ),
    "presign_ttl_zero": (
        lines("rules:", "  - name: a", "    then:", "      serve:", "        presign_ttl: 0"),
        5,
        "presign_ttl: expected seconds from 1 to 604800",
    ),
    "presign_ttl_bool": (
        lines("rules:", "  - name: a", "    then:", "      serve:", "        presign_ttl: true"),
        5,
        "presign_ttl: expected seconds from 1 to 604800",
    ),
    "private_false": (
        lines("rules:", "  - name: a", "    then:", "      serve: {private: false}"),
        4,
        "private: only true can be set (or leave it out)",
    ),
    "any_not_a_list": (
        lines("rules:", "  - name: a", "    when:", "      any: {host: live}", "    then: serve"),
        4,
        "'any' takes a non-empty list of condition mappings",
    ),
    "all_empty": (
        lines("rules:", "  - name: a", "    when:", "      all: []", "    then: serve"),
        4,
        "'all' takes a non-empty list of condition mappings",
    ),
    "error_inside_any": (
        lines(
            "rules:",
            "  - name: a",
            "    when:",
            "      any:",
            "        - {host: live}",
            "        - {draft: maybe}",  # 6
            "    then: serve",
        ),
        6,
        "draft: expected true or false, got 'maybe'",
    ),
    "not_given_a_list": (
        lines("rules:", "  - name: a", "    when:", "      not: [host]", "    then: serve"),
        4,
        "conditions must be a mapping",
    ),
    "tests_not_a_list": (
        lines("rules:", "  - name: a", "    then: serve", "tests: {name: x}"),
        4,
        "'tests' must be a list of test cases",
    ),
}


@pytest.mark.parametrize(("text", "line", "message"), list(BROKEN.values()), ids=list(BROKEN))
def test_broken_policy_reports_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    errors = [p for p in load_problems(tmp_path) if not p.warning]
    assert len(errors) == 1, [str(p) for p in errors]
    assert_problem(errors[0], path, line, message.replace("{file}", str(path)))


def test_every_error_in_a_file_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        lines(
            "rules:",
            "  - name: Bad",  # 2
            "    then: serve",
            "  - name: b",
            "    when: {host: staging, colour: red}",  # 5, twice
            "    then: {deny: 500}",  # 6
            "  - name: c",
            "    then: explode",  # 8
            "extra: true",  # 9
        ),
    )
    problems = sorted(load_problems(tmp_path), key=lambda p: (p.line, p.message))
    assert all(not p.warning for p in problems)
    assert [(p.line, p.message.split(" ")[0]) for p in problems] == [
        (2, "rule"),
        (5, "host:"),
        (5, "unknown"),
        (6, "deny:"),
        (8, "unknown"),
        (9, "unknown"),
    ]
    assert "'colour'" in problems[2].message
    assert "'explode'" in problems[4].message
    assert "'extra'" in problems[5].message
    assert {p.file for p in problems} == {str(path)}


def test_errors_in_several_files_are_all_reported(tmp_path: Path) -> None:
    first = write(tmp_path, lines("rules:", "  - name: a", "    then: explode"), "10-first.yaml")
    second = write(
        tmp_path, lines("rules:", "  - name: b", "    when: {host: staging}", "    then: serve"), "20.yaml"
    )
    problems = load_problems(tmp_path)
    assert [(p.file, p.line) for p in problems] == [(str(first), 3), (str(second), 3)]


def test_duplicate_rule_name_across_files(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        lines("rules:", "  - name: shared", "    when: {host: live}", "    then: serve"),
        "10-first.yaml",
    )
    second = write(
        tmp_path,
        lines(
            "description: second", "rules:", "  - name: shared", "    when: {host: draft}", "    then: serve"
        ),
        "20-second.yaml",
    )
    (problem,) = load_problems(tmp_path)
    assert_problem(problem, second, 3, f"rule 'shared' is already defined at {first}:2")


def test_rule_after_catch_all_is_a_warning_but_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        lines(
            "rules:",
            "  - name: everything",  # 2: no conditions, matches every request
            "    then: serve",
            "  - name: never",  # 4
            "    when: {host: live}",
            "    then: {deny: 404}",
        ),
    )
    policy = load_policy(tmp_path)
    assert [rule.name for rule in policy.rules] == ["everything", "never"]
    (warning,) = policy.warnings
    assert warning.warning is True
    assert (warning.file, warning.line) == (str(path), 4)
    assert "can never match" in warning.message
    assert (
        warning.message
        == f"rule 'never' can never match: 'everything' ({path}:2) above matches every request"
    )
    assert str(warning) == f"{path}:4: warning: {warning.message}"


def test_warnings_are_listed_with_errors(tmp_path: Path) -> None:
    write(
        tmp_path,
        lines("rules:", "  - name: everything", "    then: serve", "  - name: b", "    then: explode"),
    )
    write(tmp_path, lines("rules:", "  - name: later", "    then: login"), "zz.yaml")
    problems = load_problems(tmp_path)
    assert [(p.line, p.warning) for p in problems] == [(5, False), (2, True)]


def test_missing_directory_and_directory_without_files(tmp_path: Path) -> None:
    (problem,) = load_problems(tmp_path / "absent")
    assert problem.message == "policy directory does not exist"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.yml").write_text("rules: []\n", encoding="utf-8")
    (problem,) = load_problems(tmp_path / "empty")
    assert (
        problem.message == "no *.yaml policy files in this directory (1 *.yml file(s): rename them to .yaml)"
    )
    (tmp_path / "empty" / "notes.yml").unlink()
    (problem,) = load_problems(tmp_path / "empty")
    assert problem.message == "no *.yaml policy files in this directory"


def test_valid_policy_parses_into_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        lines(
            "description: example",
            "rules:",
            "  - name: draft_gate",  # 3
            "    description: drafts need a token",
            "    when:",
            "      host: draft",  # 6
            "      not:",
            "        any:",
            "          - {preview_listed: true}",
            "          - {user_groups: [editors, admins]}",
            "    then: {deny: 404}",
            "  - name: limited",  # 12
            "    when: {state: [uploaded, clean], access_limited: true}",
            "    then:",
            "      serve: {disposition: attachment, presign_ttl: 60, private: true}",
            "  - name: rest",  # 16
            "    then: redirect_to_current_filename",
        ),
    )
    policy = load_policy(tmp_path)
    assert policy.warnings == ()
    gate, limited, rest = policy.rules
    assert (gate.name, gate.file, gate.line, gate.description) == (
        "draft_gate",
        str(path),
        3,
        "drafts need a token",
    )
    host, negated = gate.when.children
    assert host == Check("host", ("draft",), 6)
    assert isinstance(negated, NoneOf)
    inner = negated.child
    assert isinstance(inner, AllOf) and isinstance(inner.children[0], AnyOf)
    assert inner.children[0].children[1] == AllOf((Check("user_groups", ("editors", "admins"), 10),))
    assert (gate.outcome.action, gate.outcome.status) == (Action.DENY, 404)
    assert limited.line == 12
    assert limited.when.children[0] == Check("state", ("uploaded", "clean"), 13)
    assert limited.outcome.serve == ServeOptions("attachment", 60)
    assert limited.outcome.private is True
    assert (rest.line, rest.outcome.action, rest.outcome.status) == (
        16,
        Action.REDIRECT_TO_CURRENT_FILENAME,
        302,
    )
    assert rest.when == AllOf(())
    assert policy.files[0].description == "example"


VALID = lines("rules:", "  - name: a", "    when: {host: live}", "    then: serve")


def test_revision_follows_the_content(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    first = load_policy(tmp_path).revision
    assert len(first) == 12 and all(c in "0123456789abcdef" for c in first)
    assert load_policy(tmp_path).revision == first
    write(tmp_path, VALID.replace("then: serve", "then: {deny: 404}"))
    changed = load_policy(tmp_path).revision
    assert changed != first
    write(tmp_path, VALID)
    assert load_policy(tmp_path).revision == first
    write(tmp_path, VALID + "# a comment is content too\n")
    assert load_policy(tmp_path).revision not in (first, changed)


def test_revision_changes_when_a_file_is_renamed_or_added(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    first = load_policy(tmp_path).revision
    (tmp_path / "policy.yaml").rename(tmp_path / "renamed.yaml")
    assert load_policy(tmp_path).revision != first
    write(tmp_path, lines("rules:", "  - name: b", "    then: serve"), "zz.yaml")
    assert len({first, load_policy(tmp_path).revision}) == 2


def test_files_outside_the_directory_or_not_yaml_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    write(tmp_path / "examples", lines("rules: broken: [", ""))
    (tmp_path / "notes.txt").write_text("rules: [", encoding="utf-8")
    assert [rule.name for rule in load_policy(tmp_path).rules] == ["a"]
