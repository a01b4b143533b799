"""One request's evaluation, the only one there is: parse → identify → look up → decide.

Every caller runs these same steps: the public listener and nginx's `/auth` (gateway.http.public),
`explain` on the command line and on the admin listener (gateway.explanation), and the test cases
written inside policy files (gateway.policy.cases, which starts at the look-up with the request
and identity a case states). Tracing is an option, as OPA's tracer is: the same evaluation, with
every rule considered and why. No HTTP here: callers render the result and do their own I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.identify import identify, identify_trying, learn_user_keys
from gateway.lookup import Found, Getter, look_up_route
from gateway.models import NO_REPLACEMENT, AccessRequest, AssetRecord, Decision, Identity, Replacement
from gateway.parsing import MethodNotAllowed, NotAnAsset, Origin, RawTokens, RequestParser
from gateway.policy.evaluation import RuleTrace, decide, explain
from gateway.policy.language import Policy
from gateway.state.base import RecordUnreadable, StoreUnavailable
from gateway.tokens import TokenVerifier

# Refused outcomes that mean the state store failed us (counted as store errors by the listener).
STORE_FAILURES = frozenset({"record_unreadable", "store_unavailable"})


@dataclass(frozen=True, slots=True)
class Steps:
    """The collaborators the steps need, built once per process (or per command)."""

    parser: RequestParser
    verifier: TokenVerifier
    get: Getter  # the record reader: the process's cached store, or any other
    get_by_legacy_path: Getter  # the same reader's legacy-path look-up (DESIGN 2.8)
    login_configured: bool


@dataclass(frozen=True, slots=True)
class Decided:
    """Look-up and decision for a request whose asker is known."""

    decision: Decision
    found: Found
    access: AccessRequest  # a legacy request with the id of the record found
    trace: tuple[RuleTrace, ...] = ()  # only when asked for


@dataclass(frozen=True, slots=True)
class Evaluated:
    """The pipeline reached a decision: everything a renderer needs to turn it into an answer."""

    decision: Decision
    access: AccessRequest
    origin: Origin
    identity: Identity
    tokens: RawTokens
    record: AssetRecord | None
    now: float
    policy: Policy  # the very object that decided
    replacement: Replacement = NO_REPLACEMENT
    trace: tuple[RuleTrace, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """No decision was made: not an asset path (404), a method other than GET/HEAD (405), the
    state store unreachable with nothing cached or the record unreadable (503), or a bug (500)."""

    status: int
    outcome: str
    identity: Identity | None = None
    access: AccessRequest | None = None  # when parsing succeeded
    detail: str = ""  # why, for an operator (explain); never sent to a client


class EvaluationFailed(Exception):
    """A bug past parsing (never bad input): carries the request so the caller can still say which
    one failed; the original exception is its cause."""

    def __init__(self, access: AccessRequest) -> None:
        super().__init__(access.asset_id)
        self.access = access


async def evaluate(
    steps: Steps,
    policy: Policy,
    now: float,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    *,
    peer: str | None = None,
    secure: bool = False,
    trace: bool = False,
    extra_tokens: tuple[str, ...] = (),
) -> Evaluated | Refused:
    """The whole pipeline for one request. `extra_tokens` (explain) are tried as user and preview
    tokens besides the ones the request carries. Raises EvaluationFailed on a bug past parsing."""
    try:
        access, tokens, origin = steps.parser.parse(
            method, raw_path, raw_query, headers, peer=peer, secure=secure
        )
    except NotAnAsset:
        return Refused(404, "not_found")
    except MethodNotAllowed:
        return Refused(405, "method_not_allowed")
    try:
        if extra_tokens:
            identity = identify_trying(tokens, extra_tokens, steps.verifier, now)
        else:
            identity = identify(tokens, steps.verifier, now)
            if identity.user is None and tokens.user and await learn_user_keys(tokens.user, steps.verifier):
                identity = identify(tokens, steps.verifier, now)  # the IdP rotated its keys
        try:
            decided = await decide_access(
                access, identity, steps.get, policy, now,
                get_by_legacy_path=steps.get_by_legacy_path, login_configured=steps.login_configured,
                trace=trace,
            )  # fmt: skip
        except RecordUnreadable as exc:  # this id only; never served, never guessed
            return Refused(503, "record_unreadable", identity, access, str(exc))
        except StoreUnavailable as exc:
            return Refused(503, "store_unavailable", identity, access, str(exc))
    except Exception as exc:
        raise EvaluationFailed(access) from exc
    found = decided.found
    return Evaluated(
        decided.decision, decided.access, origin, identity, tokens, found.record, now, policy,
        found.replacement, decided.trace,
    )  # fmt: skip


async def decide_access(
    access: AccessRequest,
    identity: Identity,
    get: Getter,
    policy: Policy,
    now: float,
    *,
    get_by_legacy_path: Getter,
    login_configured: bool,
    trace: bool = False,
) -> Decided:
    """Look up (by the request's route) → decide, for a parsed request and a known asker. Raises
    StoreUnavailable."""
    access, found = await look_up_route(get, get_by_legacy_path, access)
    if trace:
        decision, rules = explain(
            access, identity, found.record, policy, now,
            replacement=found.replacement, login_configured=login_configured,
        )  # fmt: skip
        return Decided(decision, found, access, tuple(rules))
    decision = decide(
        access, identity, found.record, policy, now,
        replacement=found.replacement, login_configured=login_configured,
    )  # fmt: skip
    return Decided(decision, found, access)
