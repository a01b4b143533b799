"""`asset-gateway explain`: one URL through the real pipeline (configured store, keys and policy),
reporting every rule considered and why. Tokens are shown only as a masked prefix."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from gateway.identify import identify
from gateway.models import (
    NO_REPLACEMENT,
    AccessRequest,
    Action,
    AssetRecord,
    Decision,
    Identity,
    Replacement,
    ServeOptions,
)
from gateway.parsing import MethodNotAllowed, NotAnAsset, RawTokens, RequestParser
from gateway.policy.evaluation import RuleTrace, explain
from gateway.policy.language import Policy
from gateway.policy.loading import load_policy
from gateway.settings import Settings, describe_settings
from gateway.state.base import AssetStore, StoreUnavailable
from gateway.state.factory import open_store
from gateway.state.lookup import RecordReader, look_up
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


async def explain_url(
    settings: Settings,
    url: str,
    *,
    tokens: list[str],
    host: str | None = None,
    method: str = "GET",
    store: RecordReader | None = None,
    policy: Policy | None = None,
    now: float | None = None,
) -> Explanation:
    """Raises PolicyError when no policy is given and the configured one does not load."""
    now = time.time() if now is None else now
    parts = urlsplit(url)
    headers = {"Host": host or parts.netloc}
    parser = RequestParser(settings)
    masked = tuple(mask_token(t) for t in tokens)
    url = mask_url(url, settings.tokens.preview_param)
    try:
        request, raw, _origin = parser.parse(
            method, parts.path, parts.query, headers, secure=parts.scheme == "https"
        )
    except NotAnAsset:
        return Explanation(
            url,
            "not an asset URL (expected /media/{id}/{filename}, or /government/uploads/... with a "
            "file extension): 404",
            tokens=masked,
        )
    except MethodNotAllowed:
        return Explanation(url, f"method {method} is not allowed: 405", tokens=masked)
    # Each given token is tried as a user token and as a preview cookie: whichever verifies counts.
    verifier = TokenVerifier(settings.tokens)
    identity = identify(
        RawTokens(tuple(tokens) + raw.user, raw.preview_query, raw.preview_cookie), verifier, now
    )
    if identity.preview is None:
        preview = next((p for p in (verifier.verify_preview(t, now) for t in tokens) if p), None)
        identity = Identity(identity.user, preview, False)
    refused = tuple(
        line
        for token, shown in zip(tokens, masked, strict=True)
        if (line := _refusal(verifier, token, shown, now)) is not None
    )
    policy = policy if policy is not None else load_policy(settings.policies.dir)
    store_shown = shown_store_url(settings) if store is None else "this process's store (cached)"
    opened: AssetStore | None = None
    if store is None:
        store = opened = open_store(settings.state.url.reveal())
    try:
        found = await look_up(store, request)
    except StoreUnavailable as exc:
        return Explanation(
            url, f"the state store is unreachable ({exc}): 503", request, identity, masked,
            store=store_shown, policy_dir=settings.policies.dir, revision=policy.revision,
            store_unavailable=True, refused=refused,
        )  # fmt: skip
    finally:
        if opened is not None:
            await opened.close()
    request, record, replacement = found.request, found.record, found.replacement
    decision, trace = explain(
        request, identity, record, policy, now,
        replacement=replacement, login_configured=bool(settings.login.url) or settings.oidc.enabled,
    )  # fmt: skip
    return Explanation(
        url, None, request, identity, masked, record, replacement,
        store_shown, settings.policies.dir, policy.revision, decision, tuple(trace),
        delivery=settings.server.delivery, refused=refused,
    )  # fmt: skip


def shown_store_url(settings: Settings) -> str:
    """The state URL as `asset-gateway config` shows it: everything but a password."""
    shown = next(value for key, value, _ in describe_settings(settings) if key == "state.url")
    return str(json.loads(shown))


def format_explanation(report: Explanation) -> str:
    lines = [f"URL:         {report.url}"]
    if report.tokens:
        lines.append(f"tokens:      {', '.join(report.tokens)}")
    if report.request is not None:
        lines.append(f"host:        {report.request.host} ({report.request.host_kind.value})")
        if report.request.legacy_path is not None:
            lines.append(f"legacy path: {report.request.legacy_path} (route legacy: looked up by path)")
    if report.identity is not None:
        lines.append(f"identity:    {_identity(report.identity)}")
    for refusal in report.refused:
        lines.append(f"refused:     {refusal}")
    if report.store:
        lines.append(f"store:       {report.store}")
    if report.problem is not None:
        lines.append(f"result:      {report.problem}")
        return "\n".join(lines)
    record = report.record
    if record is None:
        lines.append("record:      none")
    else:
        flags = [
            name
            for name, on in (
                ("draft", record.draft),
                ("deleted", record.deleted),
                ("access limited", record.access_limited.limited),
            )
            if on
        ]
        lines.append(
            f"record:      {record.id} v{record.version} {record.filename!r} state={record.state}"
            + (f" ({', '.join(flags)})" if flags else "")
        )
        if record.replacement_id:
            final = report.replacement.final
            lines.append(
                f"replacement: {report.replacement.status.value}"
                + (f" → {final.id} {final.filename!r}" if final else "")
            )
    lines.append(f"policy:      {report.policy_dir} (revision {report.revision})")
    for step in report.trace:
        lines.append(f"  {'MATCH' if step.matched else 'skip '} {step.rule:<28} {step.where}")
        lines.append(f"        {step.why}")
    decision = report.decision
    assert decision is not None
    details = ", ".join(_serve_details(decision, report.delivery))
    lines.append(
        f"decision:    {decision.action.value} → {answer_status(decision, report.delivery)} "
        f"(rule {decision.rule}{'; ' + details if details else ''})"
    )
    return "\n".join(lines)


def answer_status(decision: Decision, delivery: str) -> int:
    if decision.action is Action.SERVE:
        return 304 if decision.not_modified else 200 if delivery == "accel" else 302
    return decision.status


def _serve_details(decision: Decision, delivery: str) -> list[str]:
    if decision.action is not Action.SERVE:
        return []
    serve = decision.serve or ServeOptions()
    ttl = f"presign {serve.presign_ttl} s" if serve.presign_ttl else "presign s3.presign_ttl"
    return [
        "private" if decision.private else "public",
        serve.disposition,
        ttl if delivery == "redirect" else "accel",
    ]


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


def _identity(identity: Identity) -> str:
    parts = []
    if identity.user is not None:
        user = identity.user
        parts.append(f"user sub={user.sub} org={user.org} groups={sorted(user.groups)}")
    if identity.preview is not None:
        preview = identity.preview
        parts.append(
            f"preview sub={preview.sub} draft_asset_manager_access={preview.draft_asset_manager_access}"
        )
    return "; ".join(parts) or "anonymous (no valid token)"
