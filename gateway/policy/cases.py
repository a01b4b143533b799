"""Test cases written inside policy files (`tests:`): a request, who asks, the records, and the
expected answer. `asset-gateway policy test` and the test suite run them the same way."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import unquote

import yaml

from gateway.legacy import LEGACY_PREFIX
from gateway.models import (
    AccessRequest,
    Action,
    AssetRecord,
    Decision,
    HostKind,
    Identity,
    PreviewIdentity,
    UserIdentity,
)
from gateway.outcomes import answer_status, target
from gateway.parsing import NotAnAsset, split_legacy_path
from gateway.pipeline import decide_access
from gateway.policy.evaluation import DEFAULT_DENY, RuleTrace
from gateway.policy.language import Policy, PolicyError, Problem, line_of, node_value
from gateway.records import RecordInvalid, record_from_dict

T = TypeVar("T")

CASE_NOW = 1_700_000_000.0  # a fixed clock: cases must not depend on when they run
_TOKEN_EXPIRY = CASE_NOW + 3600
_CASE_FIELDS = {
    "name",
    "request",
    "user",
    "preview",
    "record",
    "records",
    "login_configured",
    "expect",
}
_REQUEST_FIELDS = {"host", "path", "method", "query", "if_none_match"}
_EXPECT_FIELDS = {"status", "rule", "action", "location", "private"}


@dataclass(frozen=True, slots=True)
class PolicyCase:
    name: str
    file: str
    line: int
    request: AccessRequest
    identity: Identity
    records: dict[str, AssetRecord]
    login_configured: bool
    expect: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: PolicyCase
    decision: Decision
    got: dict[str, Any]
    trace: list[RuleTrace] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(self.got.get(key) == value for key, value in self.case.expect.items())


def parse_cases(policy: Policy) -> tuple[list[PolicyCase], list[Problem]]:
    cases, problems = [], []
    rules = frozenset(rule.name for rule in policy.rules) | {DEFAULT_DENY}
    for policy_file in policy.files:
        for node in policy_file.tests:
            try:
                cases.append(_parse_case(policy_file.path, node, rules))
            except _CaseError as exc:
                problems.append(Problem(policy_file.path, exc.line, str(exc)))
    return cases, problems


def case_failures(policy: Policy) -> list[Problem]:
    """Every inline test case that cannot run or does not pass, as a `file:line: message` problem.
    A case that cannot run (it names a rule that does not exist, say) counts as failed."""
    cases, problems = parse_cases(policy)
    for result in run_cases(policy, cases):
        if not result.passed:
            case = result.case
            wrong = "; ".join(
                f"{key} expected {wanted!r}, got {result.got.get(key)!r}"
                for key, wanted in case.expect.items()
                if result.got.get(key) != wanted
            )
            problems.append(Problem(case.file, case.line, f"test case {case.name!r} fails: {wrong}"))
    return problems


def require_passing_cases(policy: Policy) -> Policy:
    """The policy, or PolicyError when one of its own test cases fails: a policy that contradicts
    its tests must not go live, whether at start or on a hot reload."""
    problems = case_failures(policy)
    if problems:
        raise PolicyError(problems)
    return policy


def run_cases(policy: Policy, cases: list[PolicyCase]) -> list[CaseResult]:
    """Synchronous, and safe inside a running event loop (a gateway checks a policy on start)."""
    return [_complete(run_case(policy, case)) for case in cases]


def _complete(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits: a case's records are in memory, so following
    its replacement chain needs no event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("a policy test case waited for I/O")


async def run_case(policy: Policy, case: PolicyCase) -> CaseResult:
    """The case's request through the pipeline's look-up and decision (the same steps a live
    request takes after it is parsed and its tokens verified), traced."""

    async def get(asset_id: str) -> AssetRecord | None:
        return case.records.get(asset_id)

    async def get_by_legacy_path(path: str) -> AssetRecord | None:
        holders = [r for r in case.records.values() if r.legacy_url_path == path]
        return min(holders, key=lambda r: r.deleted, default=None)  # the live holder first

    decided = await decide_access(
        case.request, case.identity, get, policy, CASE_NOW,
        get_by_legacy_path=get_by_legacy_path, login_configured=case.login_configured, trace=True,
    )  # fmt: skip
    decision, record = decided.decision, decided.found.record
    got: dict[str, Any] = {
        "status": answer_status(decision, "redirect"),
        "rule": decision.rule,
        "action": decision.action.value,
        "private": decision.private,
        "location": target(decision, record, decided.access),  # [legacy] defaults: no configuration
    }
    return CaseResult(case, decision, got, list(decided.trace))


class _CaseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _fields(node: yaml.Node, allowed: set[str], what: str) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise _CaseError(line_of(node), f"{what} must be a mapping")
    result = {}
    for key_node, value_node in node.value:
        key = node_value(key_node)
        if key not in allowed:
            raise _CaseError(
                line_of(key_node),
                f"{what}: unknown field {key!r} (expected one of {', '.join(sorted(allowed))})",
            )
        result[key] = value_node
    return result


def _parse_case(path: str, node: yaml.Node, rules: frozenset[str]) -> PolicyCase:
    fields = _fields(node, _CASE_FIELDS, "test case")
    line = line_of(node)
    name = node_value(fields["name"]) if "name" in fields else None
    if not isinstance(name, str) or not name:
        raise _CaseError(line, "test case needs a 'name'")
    if "request" not in fields or "expect" not in fields:
        raise _CaseError(line, f"test case {name!r} needs 'request' and 'expect'")

    req = {k: node_value(v) for k, v in _fields(fields["request"], _REQUEST_FIELDS, "request").items()}
    host = req.get("host", "live")
    if host not in ("live", "draft", "other"):
        raise _CaseError(line_of(fields["request"]), "request.host: expected live, draft or other")
    raw_path = str(req.get("path", ""))
    legacy_path: str | None = None
    if raw_path.startswith(LEGACY_PREFIX):
        try:
            legacy_path, filename = split_legacy_path(raw_path)
        except NotAnAsset:
            raise _CaseError(
                line_of(fields["request"]), "request.path: expected a legacy path with a file extension"
            ) from None
        asset_id = ""
    else:
        parts = raw_path.split("/")
        if len(parts) != 4 or parts[:2] != ["", "media"]:
            raise _CaseError(
                line_of(fields["request"]),
                "request.path: expected /media/{id}/{filename} or /government/uploads/...",
            )
        asset_id, filename = parts[2], unquote(parts[3])
    method = req.get("method", "GET")
    if method not in ("GET", "HEAD"):
        raise _CaseError(line_of(fields["request"]), "request.method: expected GET or HEAD")
    request = AccessRequest(
        method=method,
        scheme="https",
        host=f"{host}.policy-test",
        host_kind=HostKind(host),
        asset_id=asset_id,
        filename=filename,
        path=raw_path,
        query=str(req.get("query", "")),
        if_none_match=req.get("if_none_match"),
        route="media" if legacy_path is None else "legacy",
        legacy_path=legacy_path,
    )

    user = preview = None
    in_query = False
    if "user" in fields:
        claims = {
            k: node_value(v) for k, v in _fields(fields["user"], {"sub", "org", "groups"}, "user").items()
        }
        if not isinstance(claims.get("sub"), str):
            raise _CaseError(line_of(fields["user"]), "user.sub: expected a string")
        if not isinstance(claims.get("org", ""), str | None):
            raise _CaseError(line_of(fields["user"]), "user.org: expected a string")
        groups = claims.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise _CaseError(line_of(fields["user"]), "user.groups: expected a list of names")
        user = UserIdentity(
            claims["sub"],
            claims.get("org"),
            frozenset(claims.get("groups") or ()),
            _TOKEN_EXPIRY,
            _TOKEN_EXPIRY,
        )
    if "preview" in fields:
        allowed = {"sub", "draft_asset_manager_access", "in_query"}
        claims = {k: node_value(v) for k, v in _fields(fields["preview"], allowed, "preview").items()}
        if not isinstance(claims.get("sub"), str):
            raise _CaseError(line_of(fields["preview"]), "preview.sub: expected a string")
        preview = PreviewIdentity(
            claims["sub"], claims.get("draft_asset_manager_access") is True, _TOKEN_EXPIRY, _TOKEN_EXPIRY
        )
        in_query = claims.get("in_query") is True

    records: dict[str, AssetRecord] = {}
    raw_records: list[tuple[yaml.Node, Any]] = []
    if "record" in fields:
        raw_records.append((fields["record"], node_value(fields["record"])))
    if "records" in fields:
        if not isinstance(fields["records"], yaml.SequenceNode):
            raise _CaseError(line_of(fields["records"]), "records: expected a list of records")
        raw_records.extend((item, node_value(item)) for item in fields["records"].value)
    for record_node, raw in raw_records:
        record = _record(record_node, raw)
        records[record.id] = record

    expect_nodes = _fields(fields["expect"], _EXPECT_FIELDS, "expect")
    expect = {k: node_value(v) for k, v in expect_nodes.items()}
    if not expect:
        raise _CaseError(
            line_of(fields["expect"]),
            "expect: name at least one of status, rule, action, location, private",
        )
    _check_expect(expect, expect_nodes, rules)
    login = node_value(fields["login_configured"]) if "login_configured" in fields else False
    return PolicyCase(
        name, path, line, request, Identity(user, preview, in_query), records, login is True, expect
    )


def _check_expect(expect: dict[str, Any], nodes: dict[str, yaml.Node], rules: frozenset[str]) -> None:
    """A typo in an expectation would fail forever with a confusing diff: name it instead."""
    status = expect.get("status")
    if "status" in expect and (isinstance(status, bool) or not isinstance(status, int)
                               or not 200 <= status <= 599):  # fmt: skip
        raise _CaseError(line_of(nodes["status"]), f"expect.status: expected an HTTP status, got {status!r}")
    if "rule" in expect and expect["rule"] not in rules:
        raise _CaseError(
            line_of(nodes["rule"]),
            f"expect.rule: no rule named {expect['rule']!r} in this policy (nor {DEFAULT_DENY})",
        )
    actions = [a.value for a in Action]
    if "action" in expect and expect["action"] not in actions:
        raise _CaseError(
            line_of(nodes["action"]),
            f"expect.action: expected one of {', '.join(actions)}, got {expect['action']!r}",
        )
    if "private" in expect and not isinstance(expect["private"], bool):
        raise _CaseError(line_of(nodes["private"]), "expect.private: expected true or false")
    if "location" in expect and not isinstance(expect["location"], str | None):
        raise _CaseError(line_of(nodes["location"]), "expect.location: expected a path or URL")


def _record(node: yaml.Node, raw: Any) -> AssetRecord:
    """A record with the boring fields filled in, so a case only states what matters to it."""
    if not isinstance(raw, dict) or "id" not in raw:
        raise _CaseError(line_of(node), "a record needs at least an 'id'")
    full = {"version": 1, "object_key": f"objects/{raw['id']}", "filename": "file.pdf", **raw}
    try:
        return record_from_dict(full)
    except RecordInvalid as exc:
        raise _CaseError(line_of(node), f"invalid record: {exc}") from None
