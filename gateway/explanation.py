"""An explanation of one decision: the request through the one pipeline (gateway.pipeline) with
tracing on, so it reports every rule considered and why. `asset-gateway explain` (gateway.explaining)
and the admin listener's `/explain` both build it here. Tokens are shown only as a masked prefix."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from gateway.models import NO_REPLACEMENT, AccessRequest, AssetRecord, Decision, Identity, Replacement
from gateway.outcomes import answer_status
from gateway.parsing import RequestParser
from gateway.pipeline import Refused, Steps, evaluate
from gateway.policy.evaluation import RuleTrace
from gateway.policy.language import Policy
from gateway.settings import Settings
from gateway.tokens import Rejection, TokenVerifier


@dataclass(frozen=True, slots=True)
class Explanation:
    url: str
    problem: str | None = None  # why no decision could be made
    request: AccessRequest | None = None
    identity: Identity | None = None
    tokens: tuple[str, ...] = ()  # masked
    record: AssetRecord | None = None
    replacement: Replacement = NO_REPLACEMENT
    store: str = ""  # the state URL with any password masked
    policy_dir: str = ""
    revision: str = ""
    decision: Decision | None = None
    trace: tuple[RuleTrace, ...] = ()
    store_unavailable: bool = False
    delivery: str = "redirect"
    # Each given token that verified neither way: its mask and why, e.g.
    # "eyJhbGci…(a1b2c3): user token: wrong_issuer; preview token: unknown_kid".
    refused: tuple[str, ...] = ()


class RecordReader(Protocol):
    """All an explanation needs from a store (a running gateway passes its cached one)."""

    async def get(self, asset_id: str) -> AssetRecord | None: ...

    async def get_by_legacy_path(self, path: str) -> AssetRecord | None: ...


def mask_token(token: str) -> str:
    """Enough to tell two tokens apart, nothing to replay: the length and a short hash."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:8]
    return f"<token: {len(token)} chars, sha256 {digest}…>"


def mask_url(url: str, preview_param: str) -> str:
    """The URL with the preview token parameter's value masked (a preview link carries one)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    masked = []
    for item in parts.query.split("&"):
        name, eq, value = item.partition("=")
        if eq and unquote_plus(name) == preview_param:
            item = f"{name}={mask_token(unquote_plus(value))}"
        masked.append(item)
    return urlunsplit(parts._replace(query="&".join(masked)))


async def explain_request(
    settings: Settings,
    url: str,
    *,
    tokens: list[str],
    host: str | None,
    method: str,
    store: RecordReader,
    store_shown: str,
    policy: Policy,
    now: float,
) -> Explanation:
    """`url` through the pipeline against `store` and `policy` at `now`, traced. Each given token
    is tried as a user token and as a preview token: whichever verifies counts."""
    parts = urlsplit(url)
    masked = tuple(mask_token(t) for t in tokens)
    shown = mask_url(url, settings.tokens.preview_param)
    login_configured = bool(settings.login.url) or settings.oidc.enabled
    steps = Steps(
        RequestParser(settings), TokenVerifier(settings.tokens), store.get, store.get_by_legacy_path,
        login_configured,
    )  # fmt: skip
    result = await evaluate(
        steps, policy, now, method, parts.path, parts.query, {"Host": host or parts.netloc},
        secure=parts.scheme == "https", trace=True, extra_tokens=tuple(tokens),
    )  # fmt: skip
    if isinstance(result, Refused) and result.status == 404:
        problem = (
            "not an asset URL (expected /media/{id}/{filename}, or /government/uploads/... with a "
            "file extension): 404"
        )
        return Explanation(shown, problem, tokens=masked)
    if isinstance(result, Refused) and result.status == 405:
        return Explanation(shown, f"method {method} is not allowed: 405", tokens=masked)
    refused = tuple(
        line
        for token, masked_token in zip(tokens, masked, strict=True)
        if (line := _refusal(steps.verifier, token, masked_token, now)) is not None
    )
    if isinstance(result, Refused):
        return Explanation(
            shown, f"the state store is unreachable ({result.detail}): 503", result.access, result.identity,
            masked, store=store_shown, policy_dir=settings.policies.dir, revision=policy.revision,
            store_unavailable=True, refused=refused,
        )  # fmt: skip
    return Explanation(
        shown, None, result.access, result.identity, masked, result.record, result.replacement,
        store_shown, settings.policies.dir, policy.revision, result.decision, result.trace,
        delivery=settings.server.delivery, refused=refused,
    )  # fmt: skip


def explanation_json(report: Explanation) -> dict[str, Any]:
    """The explanation as the admin listener returns it. Tokens appear only masked."""
    decision = report.decision
    record = report.record
    identity = report.identity
    return {
        "url": report.url,
        "problem": report.problem,
        "tokens": list(report.tokens),
        "host": None if report.request is None else report.request.host_kind.value,
        "route": None if report.request is None else report.request.route,
        "legacy_path": None if report.request is None else report.request.legacy_path,
        "identity": None if identity is None else {
            "user": None if identity.user is None else {
                "sub": identity.user.sub, "org": identity.user.org, "groups": sorted(identity.user.groups),
            },
            "preview": None if identity.preview is None else {
                "sub": identity.preview.sub,
                "draft_asset_manager_access": identity.preview.draft_asset_manager_access,
            },
        },
        "record": None if record is None else {
            "id": record.id, "version": record.version, "filename": record.filename,
            "state": record.state, "draft": record.draft, "deleted": record.deleted,
            "access_limited": record.access_limited.limited,
            "replacement": report.replacement.status.value,
        },
        "refused": list(report.refused),
        "revision": report.revision,
        "decision": None if decision is None else decision.action.value,
        "status": None if decision is None else answer_status(decision, report.delivery),
        "rule": None if decision is None else decision.rule,
        "private": None if decision is None else decision.private,
        "trace": [
            {"rule": step.rule, "where": step.where, "matched": step.matched, "why": step.why}
            for step in report.trace
        ],
    }  # fmt: skip


def _refusal(verifier: TokenVerifier, token: str, shown: str, now: float) -> str | None:
    """Why a token given to `explain` counts as neither a user nor a preview token; None if it counts."""
    reasons = []
    for use in ("user", "preview"):
        checked = verifier.check(use, token, now)
        if not isinstance(checked, Rejection):
            return None
        reasons.append(f"{use} token: {checked.reason}")
    return f"{shown}: {'; '.join(reasons)}"
