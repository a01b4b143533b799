"""`asset-gateway explain`: one URL through the real pipeline (configured store, keys and policy),
printed with every rule considered and why (gateway.explanation builds the report). Tokens are
shown only as a masked prefix."""

from __future__ import annotations

import json
import time

from gateway.explanation import Explanation, RecordReader, explain_request
from gateway.models import Action, Decision, Identity, ServeOptions
from gateway.outcomes import answer_status
from gateway.policy.language import Policy
from gateway.policy.loading import load_policy
from gateway.settings import Settings, describe_settings
from gateway.state.factory import open_store


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
    policy = policy if policy is not None else load_policy(settings.policies.dir)
    if store is not None:
        return await explain_request(
            settings, url, tokens=tokens, host=host, method=method, store=store,
            store_shown="this process's store (cached)", policy=policy, now=now,
        )  # fmt: skip
    opened = open_store(settings.state.url.reveal())
    try:
        return await explain_request(
            settings, url, tokens=tokens, host=host, method=method, store=opened,
            store_shown=shown_store_url(settings), policy=policy, now=now,
        )  # fmt: skip
    finally:
        await opened.close()


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
