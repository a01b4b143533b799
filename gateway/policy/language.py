"""The policy language: YAML files of ordered, named rules (conditions → outcome), parsed into
immutable condition trees. Every problem is reported as `file:line: message`; nothing is guessed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from gateway.models import Action, ServeOptions
from gateway.policy.facts import CONDITIONS, ConditionSpec, Facts, about_final_replacement

RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int  # 1-based
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}: {kind}{self.message}"


class PolicyError(ValueError):
    """The policy could not be loaded; `problems` lists every error (and warning) found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


# ---- condition trees


@dataclass(frozen=True, slots=True)
class Check:
    """One leaf: `name: expected`. A list of expected values matches any of them."""

    name: str
    expected: tuple[object, ...]
    line: int
    # Looked up once here rather than on every request: `test` runs for most rules of every decision.
    spec: ConditionSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", CONDITIONS[self.name])

    def test(self, facts: Facts) -> bool:
        spec = self.spec
        if spec.needs_record and facts.record is None:
            return False
        actual = spec.read(facts)
        if spec.takes_list:
            assert isinstance(actual, frozenset)
            return not actual.isdisjoint(self.expected)
        return actual in self.expected

    def explain(self, facts: Facts) -> tuple[bool, str]:
        spec = CONDITIONS[self.name]
        wanted = self.expected[0] if len(self.expected) == 1 else list(self.expected)
        if spec.needs_record and facts.record is None:
            return False, f"{self.name}: wanted {_show(wanted)}, but there is no record"
        actual = spec.read(facts)
        if isinstance(actual, frozenset):
            actual = sorted(actual)
        ok = self.test(facts)
        return ok, f"{self.name}: wanted {_show(wanted)}, is {_show(actual)}"


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        # A plain loop: all() over a generator costs a generator frame per rule per request.
        for child in self.children:  # noqa: SIM110
            if not child.test(facts):
                return False
        return True

    def explain(self, facts: Facts) -> tuple[bool, str]:
        parts = [child.explain(facts) for child in self.children]
        return all(ok for ok, _ in parts), "; ".join(_mark(ok, text) for ok, text in parts)


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Condition, ...]

    def test(self, facts: Facts) -> bool:
        for child in self.children:  # noqa: SIM110  (see AllOf.test)
            if child.test(facts):
                return True
        return False

    def explain(self, facts: Facts) -> tuple[bool, str]:
        parts = [child.explain(facts) for child in self.children]
        return any(ok for ok, _ in parts), "any(" + " | ".join(_mark(ok, text) for ok, text in parts) + ")"


@dataclass(frozen=True, slots=True)
class NoneOf:
    child: Condition

    def test(self, facts: Facts) -> bool:
        return not self.child.test(facts)

    def explain(self, facts: Facts) -> tuple[bool, str]:
        ok, text = self.child.explain(facts)
        return not ok, f"not({text})"


@dataclass(frozen=True, slots=True)
class OnFinalReplacement:
    """`final_replacement: {...}`: conditions about the file the replacement chain ends at, with
    the same request and requester. False when the chain has no end (missing, broken, none)."""

    child: AllOf

    def test(self, facts: Facts) -> bool:
        final = about_final_replacement(facts)
        return final is not None and self.child.test(final)

    def explain(self, facts: Facts) -> tuple[bool, str]:
        final = about_final_replacement(facts)
        if final is None:
            return False, "final_replacement: the replacement chain has no final record"
        ok, text = self.child.explain(final)
        return ok, f"final_replacement({text})"


Condition = Check | AllOf | AnyOf | NoneOf | OnFinalReplacement


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mark(ok: bool, text: str) -> str:
    return f"{'✓' if ok else '✗'} {text}"


# ---- rules and policies


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    status: int
    serve: ServeOptions | None = None
    private: bool = False  # serve only: never let shared caches keep the answer


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    when: AllOf
    outcome: Outcome
    file: str
    line: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class PolicyFile:
    path: str
    rules: tuple[Rule, ...]
    tests: tuple[Any, ...]  # raw test-case nodes, validated by gateway.policy.cases
    description: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules of every file in a policy directory, in order, with the content hash as revision."""

    rules: tuple[Rule, ...]
    revision: str
    files: tuple[PolicyFile, ...] = ()
    warnings: tuple[Problem, ...] = field(default=(), compare=False)


_OUTCOME_STATUS = {
    Action.SERVE: 302,  # in redirect delivery; accel answers 200
    Action.LOGIN: 302,
    Action.PREVIEW_COOKIE: 302,
    Action.REDIRECT_TO_REPLACEMENT: 301,
    Action.REDIRECT_TO_DRAFT_HOST: 302,
    Action.REDIRECT_TO_CURRENT_FILENAME: 302,
    Action.REDIRECT_TO_URL: 302,
    Action.REDIRECT_TO_PLACEHOLDER: 302,
}
DENY_STATUSES = (403, 404, 410)
SERVE_OPTIONS = ("disposition", "presign_ttl", "private")


def node_value(node: yaml.Node) -> Any:
    """The plain Python value of a YAML node (lines are read from the node itself).

    A fresh constructor each time: one kept for the process would remember every node it ever
    built, and a hot-reloading process parses policies for as long as it runs."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class FileParser:
    """Parses one policy file, collecting every problem instead of stopping at the first."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[Problem] = []

    def error(self, node: yaml.Node | int, message: str, *, warning: bool = False) -> None:
        line = node if isinstance(node, int) else line_of(node)
        self.problems.append(Problem(self.path, line, message, warning))

    def parse(self) -> PolicyFile | None:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            self.yaml_error(exc)
            return None
        if root is None:
            self.error(1, "empty policy file: expected a mapping with 'rules'")
            return None
        try:
            # Build every value once up front: tags (`!!python/...`, `!foo`), unhashable keys and
            # scalars like `!!int abc` fail here as a problem, not later as a crash.
            node_value(root)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            self.yaml_error(exc, root)
            return None
        if not isinstance(root, yaml.MappingNode):
            self.error(root, "expected a mapping with 'rules' (and optionally 'description', 'tests')")
            return None
        sections = self.mapping(root, {"rules", "tests", "description"})
        if "rules" not in sections:
            self.error(root, "missing 'rules': a list of rules")
        rules = self.rules(sections["rules"]) if "rules" in sections else ()
        tests: tuple[Any, ...] = ()
        if "tests" in sections:
            node = sections["tests"]
            if isinstance(node, yaml.SequenceNode):
                tests = tuple(node.value)
            else:
                self.error(node, "'tests' must be a list of test cases")
        description = ""
        if "description" in sections:
            description = self.string(sections["description"], "description") or ""
        return PolicyFile(self.path, rules, tests, description)

    def yaml_error(self, exc: Exception, root: yaml.Node | None = None) -> None:
        mark = getattr(exc, "problem_mark", None)
        last = max(1, len(self.text.splitlines()))
        line = mark.line + 1 if mark is not None else line_of(root) if root is not None else 1
        if line > last:  # the stream ended first: point where the unclosed construct began
            context = getattr(exc, "context_mark", None)
            line = context.line + 1 if context is not None else last
        problem = getattr(exc, "problem", None) or str(exc)
        self.error(line, f"not valid YAML: {problem}")

    # -- shapes

    def mapping(self, node: yaml.MappingNode, allowed: set[str]) -> dict[str, yaml.Node]:
        result: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = node_value(key_node)
            if not isinstance(key, str) or key not in allowed:
                self.error(
                    key_node,
                    f"unknown field {key!r} (expected one of {', '.join(sorted(allowed))})",
                )
            elif key in result:
                self.error(key_node, f"duplicate field {key!r}")
            else:
                result[key] = value_node
        return result

    def string(self, node: yaml.Node, what: str) -> str | None:
        value = node_value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str):
            self.error(node, f"{what} must be a string")
            return None
        return value

    # -- rules

    def rules(self, node: yaml.Node) -> tuple[Rule, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.error(node, "'rules' must be a non-empty list of rules")
            return ()
        rules = []
        for item in node.value:
            rule = self.rule(item)
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def rule(self, node: yaml.Node) -> Rule | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, "a rule must be a mapping with 'name', 'when' and 'then'")
            return None
        fields = self.mapping(node, {"name", "description", "when", "then"})
        name = self.string(fields["name"], "name") if "name" in fields else None
        if "name" not in fields:
            self.error(node, "rule has no 'name'")
        elif name is not None and not RULE_NAME.fullmatch(name):
            self.error(fields["name"], f"rule name {name!r} must be snake_case: [a-z][a-z0-9_]*")
            name = None
        description = ""
        if "description" in fields:
            description = self.string(fields["description"], "description") or ""
        when = AllOf(())
        if "when" in fields:
            parsed = self.condition_set(fields["when"])
            when = parsed if parsed is not None else when
            if parsed is None:
                name = None
        outcome = self.outcome(fields["then"]) if "then" in fields else None
        if "then" not in fields:
            self.error(node, f"rule {name or '?'!r} has no 'then' outcome")
        if name is None or outcome is None:
            return None
        return Rule(name, when, outcome, self.path, line_of(node), description)

    def condition_set(self, node: yaml.Node) -> AllOf | None:
        """A mapping of conditions that must all hold; `any`, `all`, `not` nest."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, "conditions must be a mapping like {host: draft, draft: true}")
            return None
        children: list[Condition] = []
        ok = True
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = node_value(key_node)
            if key in seen:
                self.error(key_node, f"duplicate condition {key!r}")
                ok = False
                continue
            seen.add(str(key))
            child = self.condition(key_node, key, value_node)
            if child is None:
                ok = False
            else:
                children.append(child)
        return AllOf(tuple(children)) if ok else None

    def condition(self, key_node: yaml.Node, key: object, value: yaml.Node) -> Condition | None:
        if key in ("any", "all"):
            if not isinstance(value, yaml.SequenceNode) or not value.value:
                self.error(value, f"'{key}' takes a non-empty list of condition mappings")
                return None
            parts = [self.condition_set(item) for item in value.value]
            if any(p is None for p in parts):
                return None
            items = tuple(p for p in parts if p is not None)
            return AnyOf(items) if key == "any" else AllOf(items)
        if key == "not":
            inner = self.condition_set(value)
            return NoneOf(inner) if inner is not None else None
        if key == "final_replacement":
            inner = self.condition_set(value)
            return OnFinalReplacement(inner) if inner is not None else None
        if not isinstance(key, str) or key not in CONDITIONS:
            self.error(
                key_node,
                f"unknown condition {key!r} (expected one of any, all, not, "
                f"{', '.join(CONDITIONS)}, final_replacement)",
            )
            return None
        spec = CONDITIONS[key]
        raw = node_value(value)
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            self.error(value, f"{key}: the list of values is empty")
            return None
        if spec.takes_list:
            if not all(isinstance(v, str) and v for v in values):
                self.error(value, f"{key}: expected a name or a list of names")
                return None
        elif spec.choices is None:
            if isinstance(raw, list) or not isinstance(raw, bool):
                self.error(value, f"{key}: expected true or false, got {raw!r}")
                return None
        else:
            bad = [v for v in values if v not in spec.choices]
            if bad:
                self.error(value, f"{key}: expected one of {', '.join(spec.choices)}, got {bad[0]!r}")
                return None
        return Check(key, tuple(values), line_of(key_node))

    # -- outcomes

    def outcome(self, node: yaml.Node) -> Outcome | None:
        names = [a.value for a in Action]
        if isinstance(node, yaml.ScalarNode):
            name = node_value(node)
            if name == "deny":
                self.error(node, "'deny' needs a status: write {deny: 404}")
                return None
            if name not in names:
                self.error(node, f"unknown outcome {name!r} (expected one of {', '.join(names)})")
                return None
            action = Action(name)
            return Outcome(
                action, _OUTCOME_STATUS[action], ServeOptions() if action is Action.SERVE else None
            )
        if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
            self.error(node, "an outcome is a name like 'serve' or a one-key mapping like {deny: 404}")
            return None
        key_node, value = node.value[0]
        key = node_value(key_node)
        if key == "deny":
            status = node_value(value)
            if status not in DENY_STATUSES:
                self.error(value, f"deny: expected a status in {DENY_STATUSES}, got {status!r}")
                return None
            return Outcome(Action.DENY, int(status))
        if key == "serve":
            return self.serve_outcome(value)
        self.error(key_node, f"outcome {key!r} takes no options (only 'deny' and 'serve' do)")
        return None

    def serve_outcome(self, node: yaml.Node) -> Outcome | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, "serve options must be a mapping like {disposition: attachment}")
            return None
        options = self.mapping(node, set(SERVE_OPTIONS))
        disposition, ttl, private, ok = "inline", None, False, True
        if "disposition" in options:
            disposition = node_value(options["disposition"])
            if disposition not in ("inline", "attachment"):
                self.error(options["disposition"], "disposition: expected inline or attachment")
                ok = False
        if "presign_ttl" in options:
            ttl = node_value(options["presign_ttl"])
            if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 7 * 24 * 3600:
                self.error(options["presign_ttl"], "presign_ttl: expected seconds from 1 to 604800")
                ok = False
        if "private" in options:
            private = node_value(options["private"])
            if private is not True:
                self.error(
                    options["private"],
                    "private: only true can be set (or leave it out)",
                )
                ok = False
        if not ok:
            return None
        return Outcome(Action.SERVE, 302, ServeOptions(disposition, ttl), bool(private))


def find_unreachable(rules: tuple[Rule, ...]) -> list[Problem]:
    """Rules after a catch-all can never match: report them as warnings."""
    problems = []
    catch_all: Rule | None = None
    for rule in rules:
        if catch_all is not None:
            problems.append(
                Problem(rule.file, rule.line,
                        f"rule {rule.name!r} can never match: {catch_all.name!r} "
                        f"({catch_all.file}:{catch_all.line}) above matches every request", True)
            )  # fmt: skip
        elif not rule.when.children:
            catch_all = rule
    return problems
