"""The one evaluation (gateway.pipeline) without HTTP: each refusal, the look-up through any record
reader, tracing that never changes the decision, and explain's extra tokens. The decision table
itself is tests/policy/test_default_policy.py; the listeners' use of it is tests/http/."""

from __future__ import annotations

import secrets
import time

import pytest

from gateway.legacy import LEGACY_PREFIX
from gateway.lookup import Getter
from gateway.models import ANONYMOUS, AccessRequest, Action, AssetRecord, HostKind, ReplacementStatus
from gateway.parsing import RequestParser
from gateway.pipeline import Evaluated, EvaluationFailed, Refused, Steps, decide_access, evaluate
from gateway.policy.loading import load_policy
from gateway.settings import HostsSettings, Secret, Settings, TokenKey, TokensSettings
from gateway.state.base import RecordUnreadable, StoreUnavailable
from gateway.state.memory import MemoryAssetStore
from gateway.tokens import TokenVerifier, mint_token
from tests.http.conftest import POLICIES

pytestmark = pytest.mark.asyncio

LIVE, DRAFT = "assets.example.org", "draft-assets.example.org"
PREVIEW_KEY = TokenKey(use="preview", alg="HS256", secret=Secret(secrets.token_urlsafe(32)))
SETTINGS = Settings(
    hosts=HostsSettings(live=(LIVE,), draft=(DRAFT,)), tokens=TokensSettings(keys=(PREVIEW_KEY,))
)
POLICY = load_policy(POLICIES)
NOW = time.time()


def record(asset_id: str, **fields: object) -> AssetRecord:
    return AssetRecord(id=asset_id, version=1, object_key=f"objects/{asset_id}", filename="f.pdf", **fields)


LEGACY_PATH = f"{LEGACY_PREFIX}system/uploads/attachment_data/file/1/plan.pdf"


def steps(get: Getter, get_by_legacy_path: Getter | None = None) -> Steps:
    by_path = STORE.get_by_legacy_path if get_by_legacy_path is None else get_by_legacy_path
    return Steps(
        RequestParser(SETTINGS), TokenVerifier(SETTINGS.tokens), get, by_path, login_configured=False
    )


STORE = MemoryAssetStore(
    [
        record("pub1"),
        record("draft1", draft=True, auth_bypass_ids=("bypass-1",)),
        record("old1", replacement_id="pub1"),
        record("leg1", legacy_url_path=LEGACY_PATH, legacy_etag='"legacy-1"'),
        record("legold", replacement_id="pub1", legacy_url_path=f"{LEGACY_PREFIX}file/old.pdf"),
        record("legscan", state="unscanned", legacy_url_path=f"{LEGACY_PREFIX}file/map.png"),
    ]
)


async def run(
    path: str, *, host: str = LIVE, query: str = "", method: str = "GET", **options: object
) -> Evaluated | Refused:
    return await evaluate(steps(STORE.get), POLICY, NOW, method, path, query, {"Host": host}, **options)


async def test_a_published_file_is_served() -> None:
    result = await run("/media/pub1/f.pdf")
    assert isinstance(result, Evaluated)
    assert result.decision.action is Action.SERVE and result.record == record("pub1")
    assert result.trace == ()  # tracing is off unless asked for


async def test_not_an_asset_and_other_methods_are_refused_before_anything_is_read() -> None:
    assert await run("/other") == Refused(404, "not_found")
    assert await run("/media/pub1/f.pdf", method="POST") == Refused(405, "method_not_allowed")


async def test_the_replacement_chain_is_followed_through_the_same_reader() -> None:
    result = await run("/media/old1/f.pdf")
    assert isinstance(result, Evaluated)
    assert result.replacement.status is ReplacementStatus.LIVE
    assert result.decision.action is Action.REDIRECT_TO_REPLACEMENT


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(StoreUnavailable("down"), "store_unavailable"), (RecordUnreadable("bad"), "record_unreadable")],
)
async def test_a_store_failure_is_a_503_naming_the_request(error: Exception, outcome: str) -> None:
    async def failing(asset_id: str) -> AssetRecord | None:
        raise error

    result = await evaluate(steps(failing), POLICY, NOW, "GET", "/media/pub1/f.pdf", "", {"Host": LIVE})
    assert isinstance(result, Refused)
    assert (result.status, result.outcome, result.detail) == (503, outcome, str(error))
    assert result.access is not None and result.access.asset_id == "pub1"


async def test_a_bug_past_parsing_still_names_the_request() -> None:
    async def broken(asset_id: str) -> AssetRecord | None:
        raise KeyError(asset_id)

    with pytest.raises(EvaluationFailed) as failed:
        await evaluate(steps(broken), POLICY, NOW, "GET", "/media/pub1/f.pdf", "", {"Host": LIVE})
    assert failed.value.access.asset_id == "pub1"
    assert isinstance(failed.value.__cause__, KeyError)


@pytest.mark.parametrize(
    "path", ["/media/pub1/f.pdf", "/media/draft1/f.pdf", "/media/old1/f.pdf", "/media/none/f.pdf"]
)
@pytest.mark.parametrize("host", [LIVE, DRAFT])
async def test_tracing_reports_the_rules_and_never_changes_the_decision(path: str, host: str) -> None:
    plain, traced = await run(path, host=host), await run(path, host=host, trace=True)
    assert isinstance(plain, Evaluated) and isinstance(traced, Evaluated)
    assert plain.decision == traced.decision
    assert traced.trace and traced.trace[-1].matched == (traced.decision.rule != "default_deny")


async def test_extra_tokens_are_tried_as_preview_tokens() -> None:
    token = mint_token(PREVIEW_KEY, {"sub": "bypass-1", "exp": int(NOW) + 600})
    anonymous = await run("/media/draft1/f.pdf", host=DRAFT)
    previewing = await run("/media/draft1/f.pdf", host=DRAFT, extra_tokens=(token,))
    assert isinstance(anonymous, Evaluated) and isinstance(previewing, Evaluated)
    assert anonymous.identity.preview is None and anonymous.decision.action is not Action.SERVE
    assert previewing.identity.preview is not None and previewing.identity.preview.sub == "bypass-1"
    assert previewing.decision.action is Action.SERVE


async def test_decide_access_starts_from_a_parsed_request_and_a_known_asker() -> None:
    """What policy test cases run: the same look-up and decision, no parsing or tokens."""
    access = AccessRequest("GET", "https", LIVE, HostKind.LIVE, "old1", "f.pdf", "/media/old1/f.pdf")
    decided = await decide_access(
        access, ANONYMOUS, STORE.get, POLICY, NOW,
        get_by_legacy_path=STORE.get_by_legacy_path, login_configured=False, trace=True,
    )  # fmt: skip
    assert decided.found.record == record("old1", replacement_id="pub1")
    assert decided.decision.action is Action.REDIRECT_TO_REPLACEMENT and decided.trace


async def test_a_legacy_path_is_looked_up_by_path_and_the_request_gains_the_records_id() -> None:
    result = await run(LEGACY_PATH)
    assert isinstance(result, Evaluated)
    assert result.access.route == "legacy" and result.access.legacy_path == LEGACY_PATH
    assert result.access.asset_id == "leg1"
    assert result.record is not None and result.record.etag == '"legacy-1"'  # the legacy validators
    assert result.decision.action is Action.SERVE


async def test_a_legacy_path_follows_the_replacement_chain_by_id() -> None:
    result = await run(f"{LEGACY_PREFIX}file/old.pdf")
    assert isinstance(result, Evaluated) and result.access.asset_id == "legold"
    assert result.decision.action is Action.REDIRECT_TO_REPLACEMENT
    assert result.replacement.final is not None and result.replacement.final.id == "pub1"


async def test_a_legacy_file_not_yet_cleared_gets_the_placeholder() -> None:
    result = await run(f"{LEGACY_PREFIX}file/map.png")
    assert isinstance(result, Evaluated) and result.decision.action is Action.REDIRECT_TO_PLACEHOLDER


async def test_an_unknown_legacy_path_reads_no_record_by_id() -> None:
    asked: list[str] = []

    async def get(asset_id: str) -> AssetRecord | None:
        asked.append(asset_id)
        return await STORE.get(asset_id)

    result = await evaluate(
        steps(get), POLICY, NOW, "GET", f"{LEGACY_PREFIX}file/nothing.pdf", "", {"Host": LIVE}
    )
    assert isinstance(result, Evaluated) and result.record is None and result.access.asset_id == ""
    assert result.decision.action is Action.DENY and asked == []
