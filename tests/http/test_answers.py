"""The finished-answer cache (gateway.http.answers) never answers differently from a full evaluation.

Two gateways are built identically over one in-memory store and one injected clock, except that the
second has the answer cache off. Every request goes to both and the answers must be identical (status,
every header but X-Request-Id, body), through record writes, policy swaps, credential rotation and
the clock running past token expiries, presigned-URL windows and the record cache's TTL.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import random
import secrets
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from botocore.credentials import Credentials
from multidict import CIMultiDict

from gateway.app import build_gateway, create_public_app
from gateway.http.answers import MAX_KEY_CHARS, AnswerCache, answer_key
from gateway.http.auth_request import handle_auth
from gateway.http.context import GATEWAY, Gateway
from gateway.http.public import handle_media
from gateway.models import AssetRecord
from gateway.observability import ACCESS_LOGGER
from gateway.parsing import RequestParser
from gateway.policy.language import Policy
from gateway.policy.loading import load_policy
from gateway.policy.reload import CurrentPolicy
from gateway.presign import Presigner
from gateway.records import record_from_dict
from gateway.settings import (
    HostsSettings,
    LoginSettings,
    PoliciesSettings,
    S3Settings,
    Secret,
    ServerSettings,
    Settings,
    StateSettings,
    TokensSettings,
)
from gateway.state.memory import MemoryAssetStore
from gateway.tokens import mint_token
from tests.http.conftest import DRAFT, LIVE, LOGIN_URL, POLICIES, Keys

T0 = 1_800_000_010.0  # not on a window boundary
CACHE_TTL = 30
PRESIGN_TTL = 300  # windows of 75 s
ETAG = '"v1"'
LIMITED_USER = "editor-1"
PREVIEW_SUB = "pv-1"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def settings_for(keys: Keys, delivery: str = "redirect") -> Settings:
    return Settings(
        server=ServerSettings(delivery=delivery),
        hosts=HostsSettings(live=(LIVE,), draft=(DRAFT,)),
        state=StateSettings(url=Secret("memory://"), cache_ttl=CACHE_TTL, cache_size=1000),
        s3=S3Settings(
            bucket="assets", region="eu-west-1", endpoint_url="http://s3.test", presign_ttl=PRESIGN_TTL
        ),
        tokens=TokensSettings(
            issuer="https://idp.test", audience="asset-gateway", keys=(keys.user, keys.preview)
        ),
        policies=PoliciesSettings(dir=str(POLICIES)),
        login=LoginSettings(url=LOGIN_URL),
    )


def record(asset_id: str, **fields: Any) -> AssetRecord:
    data = {"id": asset_id, "version": 1, "object_key": f"objects/{asset_id}", "filename": "file.pdf",
            "content_type": "application/pdf", "etag": ETAG, **fields}  # fmt: skip
    return record_from_dict(data)


def initial_records() -> list[AssetRecord]:
    return [
        record("pub1"),
        record("lim1", access_limited={"users": [LIMITED_USER]}),
        record("drf1", draft=True),
        record("pvw1", draft=True, auth_bypass_ids=[PREVIEW_SUB]),
        record("ren1", filename="new.pdf", filename_history=["file.pdf"]),
        record("red1", redirect_url="https://elsewhere.test/x"),
        record("rep1", replacement_id="pub1"),
        record("scn1", state="unscanned"),
        record("del1", deleted=True),
    ]


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Policy, Policy]:
    """The shipped policy and a valid variant serving as attachments with a shorter URL life."""
    other = tmp_path_factory.mktemp("policy-b")
    text = (POLICIES / "default.yaml").read_text(encoding="utf-8")
    assert text.count("    then: serve\n") == 1
    text = text.replace(
        "    then: serve\n", "    then: {serve: {disposition: attachment, presign_ttl: 120}}\n"
    )
    (other / "default.yaml").write_text(text, encoding="utf-8")
    return load_policy(POLICIES), load_policy(other)


@dataclass
class Pair:
    """Two gateways answering side by side: `cached` with the answer cache, `plain` without."""

    cached: Gateway
    plain: Gateway
    apps: tuple[web.Application, web.Application]
    backend: MemoryAssetStore
    clock: Clock
    credentials: tuple[Credentials, Credentials]
    hits: int = 0
    answered: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def answers(self) -> AnswerCache:
        assert self.cached.answers is not None
        return self.cached.answers

    async def write(self, new: AssetRecord) -> None:
        result = await self.backend.put(new)
        assert result.applied
        for gateway in (self.cached, self.plain):
            gateway.store.invalidate(new.id)

    def swap_policy(self, policy: Policy) -> None:
        for gateway in (self.cached, self.plain):
            gateway.policy.policy = policy

    def rotate_credentials(self) -> None:
        secret = secrets.token_hex(8)
        for credentials in self.credentials:
            credentials.secret_key = secret

    async def both(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        peer: str | None = "203.0.113.9",
        secure: bool = False,
        auth: bool = False,
    ) -> tuple[Any, Any]:
        """The request to both gateways, directly or (`auth`) as nginx's auth subrequest for it."""
        answers = []
        if auth:
            headers = {**headers, "X-Original-URI": path, "X-Original-Method": method}
            method, path = "GET", "/auth"
        for app in self.apps:
            request = make_mocked_request(
                method, path, headers=CIMultiDict(headers), app=app, transport=_transport(peer, secure)
            )
            handler = handle_auth if auth else handle_media
            answers.append(shape(await handler(request)))
        self.answered += 1
        return answers[0], answers[1]


def _transport(peer: str | None, secure: bool) -> mock.Mock:
    transport = mock.Mock()
    extra = {"peername": (peer, 40000) if peer else None, "sslcontext": object() if secure else None,
             "sockname": ("127.0.0.1", 80)}  # fmt: skip
    transport.get_extra_info.side_effect = lambda key, default=None: extra.get(key, default)
    return transport


def shape(response: web.StreamResponse) -> tuple[int, list[tuple[str, str]], Any]:
    assert isinstance(response, web.Response)
    headers = [(name, value) for name, value in response.headers.items() if name != "X-Request-Id"]
    return response.status, headers, response.body


@pytest.fixture
def pair(keys: Keys, policies: tuple[Policy, Policy]) -> Pair:
    return make_pair(keys, policies)


def make_pair(keys: Keys, policies: tuple[Policy, Policy], delivery: str = "redirect") -> Pair:
    settings = settings_for(keys, delivery)
    backend = MemoryAssetStore(initial_records())
    clock = Clock()
    gateways, apps, creds = [], [], []
    for size in (10_000, 0):
        credentials = Credentials("AKIDANSWERCACHE", "secret-one")
        gateway = build_gateway(
            settings,
            store=backend,
            presigner=Presigner(settings.s3, credentials),
            policy=CurrentPolicy(POLICIES, policies[0]),
            answer_cache_size=size,
            clock=clock,
            cache_clock=clock,
        )
        gateways.append(gateway)
        apps.append(create_public_app(gateway))
        creds.append(credentials)
    assert gateways[0].answers is not None and gateways[1].answers is None
    return Pair(gateways[0], gateways[1], (apps[0], apps[1]), backend, clock, (creds[0], creds[1]))


def user_token(keys: Keys, sub: str, exp: float, **claims: Any) -> str:
    body = {"sub": sub, "exp": int(exp), "iss": "https://idp.test", "aud": "asset-gateway", **claims}
    return mint_token(keys.user, body, keys.user_private_pem)


def preview_token(keys: Keys, sub: str, exp: float, **claims: Any) -> str:
    return mint_token(keys.preview, {"sub": sub, "exp": int(exp), **claims})


# ---- the property: a random walk, every answer compared


@pytest.mark.parametrize("delivery", ["redirect", "accel"])
async def test_random_walk_answers_equal_full_evaluation(
    keys: Keys, policies: tuple[Policy, Policy], delivery: str
) -> None:
    pair = make_pair(keys, policies, delivery)
    rng = random.Random(20261121)
    clock = pair.clock
    # Tokens expire at staggered instants within the walk; some are not valid yet (nbf).
    tokens = {
        "none": None,
        "none_2": None,
        "none_3": None,
        "limited": user_token(keys, LIMITED_USER, T0 + 200),
        "limited_short": user_token(keys, LIMITED_USER, T0 + 40),
        "other_user": user_token(keys, "someone-else", T0 + 900),
        "not_yet": user_token(keys, LIMITED_USER, T0 + 900, nbf=int(T0 + 150)),
        "garbage": "not.a.token",
    }
    previews = {
        "listed": preview_token(keys, PREVIEW_SUB, T0 + 120),
        "draft_access": preview_token(keys, "pv-9", T0 + 300, draft_asset_manager_access=True),
        "expiring": preview_token(keys, PREVIEW_SUB, T0 + 30),
    }
    ids = ["pub1", "lim1", "drf1", "pvw1", "ren1", "red1", "rep1", "scn1", "del1", "none1"]
    filenames = ["file.pdf"] * 5 + ["new.pdf", "other.pdf", "f%C3%BC.pdf"]
    hosts = [LIVE] * 5 + [DRAFT] * 3 + [f"{LIVE}:8443", "elsewhere.test", DRAFT.upper()]
    queries = ["", "a=1", "download=1&b=%20"]

    def random_request() -> tuple[str, str, dict[str, str], str | None, bool]:
        method = rng.choice(["GET", "GET", "GET", "HEAD", "POST"])
        asset = rng.choice(ids)
        path = f"/media/{asset}/{rng.choice(filenames)}"
        query = rng.choice(queries)
        headers = {"Host": rng.choice(hosts)}
        user = tokens[rng.choice(list(tokens))]
        if user is not None:
            if rng.random() < 0.7:
                headers["Authorization"] = f"Bearer {user}"
            else:
                headers["Cookie"] = f"gateway_session={user}"
        roll = rng.random()
        if roll < 0.15:
            preview = previews[rng.choice(list(previews))]
            query = f"{query}&token={preview}" if query else f"token={preview}"
        elif roll < 0.3:
            preview = previews[rng.choice(list(previews))]
            cookie = headers.get("Cookie")
            headers["Cookie"] = (
                f"{cookie}; auth_bypass_token={preview}" if cookie else f"auth_bypass_token={preview}"
            )
        if rng.random() < 0.25:
            headers["If-None-Match"] = rng.choice([ETAG, '"v2"', "*", f'W/{ETAG}, "x"'])
        if rng.random() < 0.15:
            headers["X-Forwarded-Proto"] = rng.choice(["https", "http"])
            headers["X-Forwarded-Host"] = rng.choice([LIVE, DRAFT, "proxy.test"])
        peer = rng.choice(["203.0.113.9", "127.0.0.1", None])
        secure = rng.random() < 0.2
        return method, path + (f"?{query}" if query else ""), headers, peer, secure

    recent: list[tuple[str, str, dict[str, str], str | None, bool]] = []
    nginx = random.Random(7)  # which requests also arrive as nginx's auth subrequest
    served: collections.Counter[tuple[int, str]] = collections.Counter()
    auth_served: collections.Counter[tuple[int, str]] = collections.Counter()
    for step in range(2500):
        roll = rng.random()
        if roll < 0.03:
            asset = rng.choice(ids[:-1])
            await pair.write(
                record(asset, version=step + 2, etag=rng.choice([ETAG, '"v2"']),
                       draft=rng.random() < 0.3,
                       access_limited={"users": [LIMITED_USER]} if rng.random() < 0.3 else {},
                       auth_bypass_ids=[PREVIEW_SUB] if rng.random() < 0.5 else [],
                       filename=rng.choice(["file.pdf", "new.pdf"]), filename_history=["file.pdf", "old.pdf"],
                       redirect_url="https://elsewhere.test/y" if rng.random() < 0.1 else None)
            )  # fmt: skip
        elif roll < 0.05:
            pair.swap_policy(rng.choice(policies))
        elif roll < 0.06:
            pair.rotate_credentials()
        elif roll < 0.09:
            clock.now += rng.choice([0.3, 0.3, 1.0, 1.0, 2.5, 7.5, 31.0, 76.0])
        else:
            # Mostly repeats of recent requests, so the cache is hit; some new ones.
            if recent and rng.random() < 0.8:
                request = rng.choice(recent)
            else:
                request = random_request()
                recent = [*recent[-40:], request]
            method, path, headers, peer, secure = request
            for auth in (False, True) if nginx.random() < 0.4 else (False,):
                hits = pair.answers.hits
                cached, plain = await pair.both(method, path, headers, peer=peer, secure=secure, auth=auth)
                assert cached == plain, (step, method, path, headers, peer, secure, auth)
                if pair.answers.hits == hits:
                    continue
                answer = dict(cached[1])
                if auth:
                    auth_served[
                        (int(answer["X-Asset-Status"]), answer.get("X-Asset-Cache-Control", "").split(",")[0])
                    ] += 1
                else:
                    status = 302 if cached[0] == 200 else cached[0]  # accel serves with a 200
                    served[(status, answer.get("Cache-Control", "").split(",")[0])] += 1
    # The walk reached every kind of answer and the cache really answered a good share.
    assert pair.answers.hits > 300, pair.answers.hits
    assert pair.answers.stored > 150, pair.answers.stored
    for kind in ((302, "public"), (302, "private"), (304, "public"), (304, "private"), (404, "private")):
        assert served[kind] >= 3, (served, auth_served)
    for kind in ((200, "public"), (200, "private"), (302, "private"), (404, "private")):
        assert auth_served[kind] >= 3, auth_served


# ---- targeted: what ends a cached answer


async def hit_then(pair: Pair, path: str, headers: dict[str, str]) -> tuple[Any, Any]:
    """Ask twice (the second is answered from the cache); return that answer pair."""
    await pair.both("GET", path, headers)
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", path, headers)
    assert pair.answers.hits == hits + 1
    assert cached == plain
    return cached, plain


async def test_public_serve_is_cached_and_max_age_counts_down(pair: Pair) -> None:
    first, _ = await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    assert first[0] == 302
    pair.clock.now += 3.4  # same window: a hit, max-age recomputed for the new second
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits + 1
    assert cached == plain
    assert dict(cached[1])["Cache-Control"] != dict(first[1])["Cache-Control"]
    assert dict(cached[1])["Location"] == dict(first[1])["Location"]


async def test_token_expiry_ends_a_cached_allow(pair: Pair, keys: Keys) -> None:
    token = user_token(keys, LIMITED_USER, T0 + 20)
    headers = {"Host": LIVE, "Authorization": f"Bearer {token}"}
    cached, _ = await hit_then(pair, "/media/lim1/file.pdf", headers)
    assert cached[0] == 302
    leeway = pair.cached.settings.tokens.leeway
    pair.clock.now = T0 + 20 + leeway  # expired, but inside the leeway: valid for every step
    cached, plain = await pair.both("GET", "/media/lim1/file.pdf", headers)
    assert cached == plain and cached[0] == 302
    pair.clock.now = T0 + 20 + leeway + 0.5
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/lim1/file.pdf", headers)
    assert pair.answers.hits == hits
    assert cached == plain and cached[0] == 404


async def test_a_token_not_valid_yet_is_not_cached(pair: Pair, keys: Keys) -> None:
    token = user_token(keys, LIMITED_USER, T0 + 900, nbf=int(T0 + 100))  # valid from T0 + 70 (leeway)
    headers = {"Host": LIVE, "Authorization": f"Bearer {token}"}
    cached, plain = await pair.both("GET", "/media/lim1/file.pdf", headers)
    assert cached == plain and cached[0] == 404
    assert len(pair.answers) == 0
    pair.clock.now = T0 + 71
    cached, plain = await pair.both("GET", "/media/lim1/file.pdf", headers)
    assert cached == plain and cached[0] == 302


async def test_a_record_change_ends_a_cached_answer(pair: Pair) -> None:
    cached, _ = await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    assert cached[0] == 302
    await pair.write(record("pub1", version=2, deleted=True))
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits
    assert cached == plain and cached[0] == 410


async def test_a_missing_record_appearing_ends_a_cached_404(pair: Pair) -> None:
    cached, _ = await hit_then(pair, "/media/new1/file.pdf", {"Host": LIVE})
    assert cached[0] == 404
    await pair.write(record("new1"))
    cached, plain = await pair.both("GET", "/media/new1/file.pdf", {"Host": LIVE})
    assert cached == plain and cached[0] == 302


async def test_a_policy_swap_ends_a_cached_answer(pair: Pair, policies: tuple[Policy, Policy]) -> None:
    cached, _ = await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    assert "attachment" not in dict(cached[1])["Location"]
    pair.swap_policy(policies[1])
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits
    assert cached == plain and "attachment" in dict(cached[1])["Location"]


async def test_a_policy_reloaded_unchanged_is_a_new_object_and_ends_it(pair: Pair) -> None:
    await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    pair.swap_policy(load_policy(POLICIES))
    hits = pair.answers.hits
    await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits


async def test_record_cache_ttl_expiry_ends_a_cached_answer(pair: Pair) -> None:
    await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    # Written behind the cache's back (an invalidation lost): the TTL is what heals it.
    await pair.backend.put(record("pub1", version=2, access_limited={"users": ["x"]}))
    pair.clock.now += 1
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert cached == plain and cached[0] == 302  # both still see the cached record
    pair.clock.now += CACHE_TTL
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits
    assert cached == plain and cached[0] == 404


async def test_window_end_ends_a_cached_serve(pair: Pair) -> None:
    first, _ = await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    pair.clock.now = (T0 // 75 + 1) * 75  # the next window starts
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits
    assert cached == plain
    assert dict(cached[1])["Location"] != dict(first[1])["Location"]


async def test_rotated_credentials_end_a_cached_serve(pair: Pair) -> None:
    first, _ = await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    pair.rotate_credentials()
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits
    assert cached == plain
    assert dict(cached[1])["Location"] != dict(first[1])["Location"]


async def test_not_cached_replacement_preview_cookie_and_rejected_tokens(pair: Pair, keys: Keys) -> None:
    preview = preview_token(keys, PREVIEW_SUB, T0 + 100)
    for path, headers in (
        ("/media/rep1/file.pdf", {"Host": LIVE}),  # a replacement chain
        (f"/media/pvw1/file.pdf?token={preview}", {"Host": DRAFT}),  # sets the cookie (Max-Age)
        ("/media/pub1/file.pdf", {"Host": LIVE, "Authorization": "Bearer not.a.token"}),
    ):
        for _ in range(2):
            cached, plain = await pair.both("GET", path, headers)
            assert cached == plain
    assert len(pair.answers) == 0


async def test_every_header_that_matters_is_in_the_key(pair: Pair, keys: Keys) -> None:
    token = user_token(keys, LIMITED_USER, T0 + 300)
    base = {"Host": LIVE}
    await pair.both("GET", "/media/lim1/file.pdf", base)
    for headers in (
        {**base, "Authorization": f"Bearer {token}"},
        {**base, "Cookie": f"gateway_session={token}"},
        {**base, "If-None-Match": ETAG},
        {"Host": DRAFT},
    ):
        cached, plain = await pair.both("GET", "/media/lim1/file.pdf", headers)
        assert cached == plain
    # Forwarded headers count only from a trusted proxy, and then they are in the key.
    forwarded = {**base, "X-Forwarded-Proto": "https", "X-Forwarded-Host": DRAFT}
    for peer in ("203.0.113.9", "127.0.0.1", "203.0.113.9", "127.0.0.1"):
        cached, plain = await pair.both("GET", "/media/drf1/file.pdf", forwarded, peer=peer)
        assert cached == plain


async def test_oversized_keys_are_not_kept(pair: Pair) -> None:
    headers = {"Host": LIVE, "Cookie": "junk=" + "x" * MAX_KEY_CHARS}
    for _ in range(2):
        cached, plain = await pair.both("GET", "/media/pub1/file.pdf", headers)
        assert cached == plain
    assert len(pair.answers) == 0


async def test_a_hit_logs_and_counts_like_a_full_evaluation(
    pair: Pair, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    token = user_token(keys, LIMITED_USER, T0 + 300)
    headers = {"Host": LIVE, "Authorization": f"Bearer {token}"}
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        for _ in range(2):
            request = make_mocked_request(
                "GET", "/media/lim1/file.pdf", headers=CIMultiDict(headers), app=pair.apps[0],
                transport=_transport("203.0.113.9", False),
            )  # fmt: skip
            response = await handle_media(request)
            assert response.headers["X-Request-Id"]
    assert pair.answers.hits == 1
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 2
    for line in lines:
        for varying in ("ts", "request_id", "duration_ms"):
            line.pop(varying)
    assert lines[0] == lines[1]
    assert list(lines[0]) == list(lines[1])  # the same fields in the same order
    assert lines[0]["subject"] == LIMITED_USER and lines[0]["rule"] == "serve"
    assert token not in json.dumps(lines)
    gateway = pair.apps[0][GATEWAY]
    assert gateway.metrics.counts.requests[("media", "serve", "serve", "302")] == 2


async def test_metrics_and_store_counters_match_the_plain_gateway(pair: Pair) -> None:
    for _ in range(3):
        await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
        await pair.both("GET", "/media/none1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == 4
    assert pair.cached.metrics.counts.requests == pair.plain.metrics.counts.requests
    assert (pair.cached.store.hits, pair.cached.store.misses) == (
        pair.plain.store.hits,
        pair.plain.store.misses,
    )


async def test_a_clock_stepping_back_misses(pair: Pair) -> None:
    await hit_then(pair, "/media/pub1/file.pdf", {"Host": LIVE})
    pair.clock.now -= 100  # into the previous URL window
    hits = pair.answers.hits
    cached, plain = await pair.both("GET", "/media/pub1/file.pdf", {"Host": LIVE})
    assert pair.answers.hits == hits
    assert cached == plain


def test_answer_key_holds_forwarded_headers_only_from_a_trusted_peer() -> None:
    headers = {"Host": LIVE, "X-Forwarded-Proto": "https", "X-Forwarded-Host": DRAFT, "Cookie": "a=b"}
    untrusted = answer_key("GET", "/media/a/b", "q=1", headers, False, False, endpoint="media")
    trusted = answer_key("GET", "/media/a/b", "q=1", headers, True, False, endpoint="media")
    assert untrusted is not None and trusted is not None
    assert "https" not in untrusted and DRAFT not in untrusted
    assert "https" in trusted and DRAFT in trusted
    assert untrusted != answer_key(
        "GET", "/media/a/b", "q=1", headers, False, True, endpoint="media"
    )  # secure
    assert untrusted != answer_key("HEAD", "/media/a/b", "q=1", headers, False, False, endpoint="media")
    assert untrusted != answer_key("GET", "/media/a/b", "q=2", headers, False, False, endpoint="media")
    assert untrusted != answer_key("GET", "/media/a/b", "q=1", headers, False, False, endpoint="auth")
    for name in ("Host", "Cookie", "Authorization", "If-None-Match", *RequestParser.HEADERS):
        assert untrusted != answer_key(
            "GET", "/media/a/b", "q=1", {**headers, name: "x"}, False, False, endpoint="media"
        )
    for name in RequestParser.PROXY_HEADERS:  # what the parser reads from a trusted proxy only
        changed = {**headers, name: "x"}
        assert trusted != answer_key("GET", "/media/a/b", "q=1", changed, True, False, endpoint="media")
        assert untrusted == answer_key("GET", "/media/a/b", "q=1", changed, False, False, endpoint="media")
    long = {"Authorization": "Bearer " + "x" * MAX_KEY_CHARS}
    assert answer_key("GET", "/media/a/b", "", long, False, False, endpoint="media") is None


def test_without_a_record_cache_there_is_no_answer_cache(keys: Keys) -> None:
    """An answer is only reused while its record stays cached: with the record cache off, every
    request would compute a key and miss, twice (connection layer and handler), for nothing."""
    base = settings_for(keys)
    off = dataclasses.replace(base, state=dataclasses.replace(base.state, cache_ttl=0))
    credentials = Credentials("AKIAEXAMPLE", "secret")
    for settings, cached in ((base, True), (off, False)):
        gateway = build_gateway(
            settings, store=MemoryAssetStore(initial_records()), presigner=Presigner(settings.s3, credentials)
        )
        assert (gateway.answers is not None) is cached
