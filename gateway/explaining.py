"""`asset-gateway explain`: one URL through the real pipeline (configured store, keys and policy),
reporting every rule considered and why. Tokens are shown only as a masked prefix."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.identify import identify
from gateway.models import NO_REPLACEMENT, AccessRequest, AssetRecord, Decision, Identity, Replacement
from gateway.parsing import MethodNotAllowed, NotAnAsset, RawTokens, RequestParser
from gateway.policy.evaluation import RuleTrace, explain
from gateway.policy.language import Policy
from gateway.policy.loading import load_policy
from gateway.settings import Settings
from gateway.state.base import AssetStore, StoreUnavailable
from gateway.state.chain import resolve_replacement
from gateway.state.factory import open_store
from gateway.tokens import TokenVerifier


@dataclass(frozen=True, slots=True)
class Explanation:
    url: str
    problem: str | None = None  # why no decision could be made
    request: AccessRequest | None = None
    identity: Identity | None = None
    tokens: tuple[str, ...] = ()  # masked
    record: AssetRecord | None = None
    replacement: Replacement = NO_REPLACEMENT
    policy_dir: str = ""
    revision: str = ""
    decision: Decision | None = None
    trace: tuple[RuleTrace, ...] = ()


def mask_token(token: str) -> str:
    return f"{token[:6]}…({len(token)} chars)" if len(token) > 6 else "…"


async def explain_url(
    settings: Settings,
    url: str,
    *,
    tokens: list[str],
    host: str | None = None,
    method: str = "GET",
    store: AssetStore | None = None,
    policy: Policy | None = None,
    now: float | None = None,
) -> Explanation:
    import time

    now = time.time() if now is None else now
    parts = urlsplit(url)
    headers = {"Host": host or parts.netloc}
    parser = RequestParser(settings)
    masked = tuple(mask_token(t) for t in tokens)
    try:
        request, raw, _origin = parser.parse(
            method, parts.path, parts.query, headers, secure=parts.scheme == "https"
        )
    except NotAnAsset:
        return Explanation(url, "not an asset URL (expected /media/{id}/{filename}): 404", tokens=masked)
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
    policy = policy if policy is not None else load_policy(settings.policies.dir)
    own_store = store is None
    backend = open_store(settings.state.url.reveal()) if store is None else store
    try:
        record = await backend.get(request.asset_id)
        replacement = NO_REPLACEMENT
        if record is not None and record.replacement_id is not None:
            replacement = await resolve_replacement(backend.get, record)
    except StoreUnavailable as exc:
        return Explanation(url, f"the state store is unreachable ({exc}): 503", request, identity, masked)
    finally:
        if own_store:
            await backend.close()
    decision, trace = explain(
        request, identity, record, policy, now,
        replacement=replacement, login_configured=bool(settings.login.url),
    )  # fmt: skip
    return Explanation(
        url, None, request, identity, masked, record, replacement,
        settings.policies.dir, policy.revision, decision, tuple(trace),
    )  # fmt: skip


def format_explanation(report: Explanation) -> str:
    lines = [f"URL:         {report.url}"]
    if report.tokens:
        lines.append(f"tokens:      {', '.join(report.tokens)}")
    if report.request is not None:
        lines.append(f"host:        {report.request.host} ({report.request.host_kind.value})")
    if report.identity is not None:
        lines.append(f"identity:    {_identity(report.identity)}")
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
    status = 304 if decision.not_modified else decision.status
    lines.append(f"decision:    {decision.action.value} → {status} (rule {decision.rule})")
    return "\n".join(lines)


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
