"""Every outcome a policy can decide, in one table: its status, whether it needs a record, whether
its answer may be kept by the answer cache, which responder method renders it, and the target a
redirect names. The policy language, the decision, the responder, the answer cache, `explain` and
policy test cases all read this table, so a new outcome is one row here plus its renderer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from gateway.legacy import placeholder_for
from gateway.models import AccessRequest, Action, AssetRecord, Decision
from gateway.settings import LegacySettings
from gateway.urls import asset_path

# (decision, record, request, [legacy] settings) → the redirect's path or URL, or None.
Target = Callable[[Decision, AssetRecord | None, AccessRequest, LegacySettings], str | None]


def _no_target(
    decision: Decision, record: AssetRecord | None, request: AccessRequest, legacy: LegacySettings
) -> str | None:
    return None


def _replacement_path(
    decision: Decision, record: AssetRecord | None, request: AccessRequest, legacy: LegacySettings
) -> str | None:
    final = decision.replacement
    return None if final is None else asset_path(final.id, final.filename)


def _current_filename_path(
    decision: Decision, record: AssetRecord | None, request: AccessRequest, legacy: LegacySettings
) -> str | None:
    return None if record is None else asset_path(record.id, record.filename)


def _redirect_url(
    decision: Decision, record: AssetRecord | None, request: AccessRequest, legacy: LegacySettings
) -> str | None:
    return None if record is None else record.redirect_url


def _placeholder_path(
    decision: Decision, record: AssetRecord | None, request: AccessRequest, legacy: LegacySettings
) -> str | None:
    """DESIGN 2.8: images get the image placeholder, every other file the page."""
    return placeholder_for(request.filename, legacy.placeholder, legacy.image_placeholder)


@dataclass(frozen=True, slots=True)
class OutcomeSpec:
    """What one Action means everywhere it is handled."""

    status: int  # what a policy outcome answers (deny: the default; a rule names 403, 404 or 410)
    needs_record: bool  # without a record the decision is a 404 whatever the rule says
    cacheable: bool  # its finished answer may be reused by gateway.http.answers
    renderer: str  # the gateway.responses.Responder method that turns it into HTTP
    # The path or URL it sends the browser to, as policy test cases state it (None: no redirect,
    # or one built from tokens and hosts, which a case cannot know).
    target: Target = _no_target


OUTCOMES: Final[Mapping[Action, OutcomeSpec]] = MappingProxyType(
    {
        # SERVE's status is redirect delivery's 302; accel answers 200 and a matching ETag 304.
        Action.SERVE: OutcomeSpec(302, needs_record=True, cacheable=True, renderer="serve"),
        Action.DENY: OutcomeSpec(404, needs_record=False, cacheable=True, renderer="deny"),
        Action.LOGIN: OutcomeSpec(302, needs_record=False, cacheable=True, renderer="to_login"),
        # Its cookie's Max-Age counts down: never reused.
        Action.PREVIEW_COOKIE: OutcomeSpec(
            302, needs_record=False, cacheable=False, renderer="set_preview_cookie"
        ),
        # Depends on other records (the chain): never reused.
        Action.REDIRECT_TO_REPLACEMENT: OutcomeSpec(
            301, needs_record=False, cacheable=False, renderer="to_replacement", target=_replacement_path
        ),
        Action.REDIRECT_TO_DRAFT_HOST: OutcomeSpec(
            302, needs_record=False, cacheable=True, renderer="to_draft_host"
        ),
        Action.REDIRECT_TO_CURRENT_FILENAME: OutcomeSpec(
            302,
            needs_record=True,
            cacheable=True,
            renderer="to_current_filename",
            target=_current_filename_path,
        ),
        Action.REDIRECT_TO_URL: OutcomeSpec(
            302, needs_record=True, cacheable=True, renderer="to_url", target=_redirect_url
        ),
        # Legacy files not yet cleared for serving (DESIGN 2.8). Only the legacy route decides it,
        # and that route never uses the answer cache; not reused should it ever reach it.
        Action.REDIRECT_TO_PLACEHOLDER: OutcomeSpec(
            302,
            needs_record=True,
            cacheable=False,
            renderer="to_placeholder",
            target=_placeholder_path,
        ),
    }
)


def answer_status(decision: Decision, delivery: str) -> int:
    """The status the browser gets for a decision in this delivery mode (a Host the gateway does
    not serve aside, which always answers 404)."""
    if decision.action is Action.SERVE:
        return 304 if decision.not_modified else 200 if delivery == "accel" else 302
    return decision.status


def target(
    decision: Decision,
    record: AssetRecord | None,
    request: AccessRequest,
    legacy: LegacySettings | None = None,
) -> str | None:
    """Where the decision sends the browser, as far as it follows from the decision, the record,
    the request and the [legacy] settings (their defaults when none are given: policy cases)."""
    return OUTCOMES[decision.action].target(decision, record, request, legacy or LegacySettings())
