"""A bounded fuzz of both listeners over real sockets, on real Redis: thousands of requests built by
a seeded generator (odd methods, paths with encoded and raw odd bytes, Host and forwarded headers,
cookie shapes, tokens of every kind and size). Every request gets an answer, and none is a 5xx
other than 503. Seeded, so a failure names a request that can be replayed."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.records import record_from_dict
from tests.http.conftest import DRAFT, LIVE, Keys
from tests.http.test_listener_edges import ADMIN_TOKEN, Listeners, listen_both
from tests.servers import S3Server

SEED = 20261202
PUBLIC_REQUESTS = 3000
ADMIN_REQUESTS = 600
DEADLINE = 15.0  # seconds one answer may take before the test fails (it is never reached when healthy)
IDS = ["pub1", "dr1", "lim1", "old1", "new1", "old2", "new2", "gone1", "away1", "unscanned1", "nothere"]


@pytest.fixture
async def fuzzed(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[Listeners]:
    async for running in listen_both(redis_url, s3_server, keys, {"header_timeout": 5.0}, {}):
        records = [
            {"id": "pub1", "filename": "a.pdf", "etag": '"e1"'},
            {"id": "dr1", "filename": "d.pdf", "draft": True, "auth_bypass_ids": ["bp1"]},
            {"id": "lim1", "filename": "l.pdf", "access_limited": {"users": ["u1"], "groups": ["g"]}},
            {"id": "old1", "filename": "o.pdf", "replacement_id": "new1"},
            {"id": "new1", "filename": "n.pdf", "draft": True},
            {"id": "old2", "filename": "o2.pdf", "replacement_id": "new2"},  # a public 301
            {"id": "new2", "filename": "n2.pdf"},
            {"id": "gone1", "filename": "g.pdf", "deleted": True},
            {"id": "away1", "filename": "w.pdf", "redirect_url": "https://www.example.org/x"},
            {"id": "unscanned1", "filename": "u.pdf", "state": "unscanned"},
        ]
        store = running.gateway.store
        for fields in records:
            data = {"version": 1, "object_key": f"objects/{fields['id']}", "content_type": "application/pdf"}
            assert (await store.put(record_from_dict({**data, **fields}))).applied
        yield running


def _tokens(keys: Keys, rng: random.Random) -> list[str]:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    unsigned = b64(b'{"alg":"none"}') + "." + b64(json.dumps({"sub": "u1", "exp": 2**40}).encode()) + "."
    return [
        keys.user_token("u1", groups=["g"]),
        keys.user_token("u1", ttl=-100),
        keys.user_token("u2", nbf=int(time.time()) + 999),
        keys.preview_token("bp1"),
        keys.preview_token("x", draft_asset_manager_access=True),
        keys.preview_token("bp1", ttl=-5),
        unsigned,
        "a.b.c",
        "",
        "eyJ" + "A" * rng.randrange(0, 9000),
        "é" * 20,
        keys.user_token("u1", padding="x" * rng.randrange(0, 7000)),
    ]


ODD_BYTES = [
    "%00",
    "%0a",
    "%0d%0a",
    "%ff",
    "%c3%28",
    "%2f",
    "%2e%2e",
    "..",
    "//",
    "%",
    "%zz",
    "%e2%80%ae",
    ";",
    "?",
    "#",
    "+",
    "\\",
    "%5c",
    "~",
    "*",
    "%C3%A9",
    "%7f",
]
# Raw bytes aiohttp's parser refuses in a request target (a bare 400), now and then.
RARE = [" ", "\t", "\x7f", "é", "\u202e"]


def _text(rng: random.Random, alphabet: list[str], most: int) -> str:
    pieces = [rng.choice(alphabet) for _ in range(rng.randrange(0, most))]
    if pieces and rng.random() < 0.05:
        pieces[rng.randrange(len(pieces))] = rng.choice(RARE)
    return "".join(pieces)


def public_request(rng: random.Random, tokens: list[str]) -> bytes:
    """One raw HTTP/1.1 request; bytes the client libraries would refuse are fine here."""
    method = rng.choice(
        ["GET"] * 6
        + ["HEAD"] * 2
        + ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "TRACE", "get", "M-SEARCH"]
    )
    name_chars = [*ODD_BYTES, "a", "b", ".pdf", "-", "_", "%20"]
    shape = rng.random()
    if shape < 0.6:
        known = rng.choice(["a.pdf", "d.pdf", "l.pdf", "o.pdf", "n.pdf", "x.pdf"])
        filename = known if rng.random() < 0.5 else _text(rng, name_chars, 12)
        path = f"/media/{rng.choice(IDS)}/{filename}"
    elif shape < 0.75:
        path = "/" + _text(rng, [*ODD_BYTES, "media", "/", "a", "auth"], 10)
    elif shape < 0.85:
        path = "/auth"
    else:
        path = "/media/" + _text(rng, [*ODD_BYTES, "a", "/"], 40) + "x" * rng.choice([0, 0, 100, 3000, 9000])
    query = ""
    if rng.random() < 0.4:
        parts = [f"token={rng.choice(tokens)}" for _ in range(rng.randrange(1, 3))]
        parts += [_text(rng, [*ODD_BYTES, "a", "=", "&"], 6) for _ in range(rng.randrange(0, 3))]
        rng.shuffle(parts)
        query = "?" + "&".join(parts)
    headers = [
        (
            "Host",
            rng.choice(
                [
                    LIVE,
                    DRAFT,
                    f"{LIVE}:6666",
                    f"{DRAFT}:1",
                    "evil.test",
                    "",
                    "[::1]",
                    "a b",
                    LIVE.upper(),
                    f"{LIVE}.",
                    "%41",
                ]
            ),
        )
    ]
    if rng.random() < 0.4:
        headers.append(
            (
                "Authorization",
                rng.choice(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]) + rng.choice(tokens),
            )
        )
    if rng.random() < 0.4:
        name = rng.choice(["gateway_session", "auth_bypass_token", "other", "gateway_session "])
        value = rng.choice(tokens)
        value = rng.choice([value, f'"{value}"', f'"{value}', value + "\\"])
        extra = rng.choice(
            [
                "",
                "; a=1",
                '; a="' + "\\" * rng.randrange(0, 3000) + '"',
                "; " + "; ".join(f"c{n}=v" for n in range(rng.randrange(0, 500))),
            ]
        )
        headers.append(("Cookie", rng.choice([f"{name}={value}{extra}", f"{extra}; {name}={value}", extra])))
    if rng.random() < 0.2:
        headers.append(("X-Forwarded-Host", rng.choice(["evil:6666", f"{LIVE}:6666", DRAFT, "", ",,"])))
    if rng.random() < 0.2:
        headers.append(("X-Forwarded-Proto", rng.choice(["https", "http", "gopher", "HTTPS, http"])))
    if rng.random() < 0.2:
        headers.append(("If-None-Match", rng.choice(['"e1"', "*", 'W/"e1"', "\x01", '"' * 50])))
    if rng.random() < 0.2:
        headers.append(("X-Request-Id", rng.choice(["abc", "x" * 300, "\x7f", "a b"])))
    if path == "/auth":
        original = f"/media/{rng.choice(IDS)}/{_text(rng, name_chars, 8)}{query}"
        headers += [
            ("X-Original-URI", rng.choice([original, "", "no-slash", "/media"])),
            ("X-Original-Method", rng.choice(["GET", "HEAD", "POST", "", "\x00"])),
        ]
    return _encode(method, path + query, headers, rng)


def admin_request(rng: random.Random, tokens: list[str]) -> bytes:
    method = rng.choice(["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS"])
    asset = rng.choice([*IDS, "a" * 65, "%00", "a%2fb", "é", "..", ""])
    path = rng.choice(
        [
            f"/assets/{asset}",
            "/healthz",
            "/readyz",
            "/metrics",
            "/explain",
            "/",
            "/assets",
            "/assets/" + _text(rng, ODD_BYTES, 6),
        ]
    )
    digits = "9" * rng.randrange(1, 6000)
    explained = "?url=" + _text(rng, ODD_BYTES, 8) + "&method=" + rng.choice(["GET", "BREW"])
    query = rng.choice(
        [
            "",
            "?version=2",
            "?version=0",
            "?version=-1",
            f"?version={digits}",
            "?version=%F0%9D%9F%99",
            "?url=https://assets.test/media/pub1/a.pdf",
            explained,
        ]
    )
    auth = rng.choice([f"Bearer {ADMIN_TOKEN}"] * 3 + ["Bearer \udcff", "Bearer", "", f"Basic {ADMIN_TOKEN}"])
    headers = [("Host", "admin"), ("Authorization", auth)]
    if rng.random() < 0.3:
        headers.append(("X-Explain-Token", rng.choice(tokens)))
    bodies = [
        b"",
        b"{}",
        b"[]",
        b"null",
        b'{"version": 2}',
        b'{"version": ' + b"9" * 5000 + b"}",
        b'{"id": "pub1", "version": 9, "object_key": "k", "filename": "a.pdf"}',
        b"\xff\xfe",
        b"[" * 5000,
        b'{"version": 3, "draft": null, "access_limited": {"users": [1]}}',
        json.dumps({"version": 2**64, "filename": "x" * 5000}).encode(),
    ]
    body = rng.choice(bodies) if method in ("PUT", "PATCH", "POST") else b""
    return _encode(method, path + query, headers, rng, body)


def _encode(
    method: str, target: str, headers: list[tuple[str, str]], rng: random.Random, body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n"
    if rng.random() < 0.03:  # raw bytes no encoder would produce, anywhere in the head
        position = rng.randrange(0, len(head) - 4)
        head = head[:position] + bytes([rng.choice([0x00, 0x0A, 0x0D, 0x7F, 0x80, 0xFF])]) + head[position:]
    return head + body


async def send(port: int, raw: bytes) -> int:
    """The status of the answer to `raw`: its head is enough (a keep-alive answer to HEAD, say, is
    followed by neither a body nor a close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    except ConnectionResetError:  # closed while we still wrote: only allowed after it answered
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    except asyncio.IncompleteReadError as closed:
        answer = closed.partial  # closed before a whole head: the assertion below reports it
    except TimeoutError:
        raise AssertionError(f"no answer within {DEADLINE}s to {raw[:300]!r}") from None
    finally:
        writer.close()
    assert answer[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 "), (raw[:300], answer[:200])
    return int(answer[9:12])


async def _fuzz(port: int, count: int, build: Callable[[random.Random], bytes], seed: int) -> Counter[int]:
    rng = random.Random(seed)
    statuses: Counter[int] = Counter()
    for n in range(count):
        raw = build(rng)
        status = await send(port, raw)
        assert status < 500 or status == 503, f"request {n} (seed {seed}) got {status}: {raw[:300]!r}"
        statuses[status] += 1
    return statuses


@pytest.mark.timeout(600)
async def test_fuzzed_requests_never_get_a_5xx_but_503(fuzzed: Listeners, keys: Keys) -> None:
    rng = random.Random(SEED)
    tokens = _tokens(keys, rng)
    public = await _fuzz(fuzzed.public_port, PUBLIC_REQUESTS, lambda r: public_request(r, tokens), SEED)
    admin = await _fuzz(fuzzed.admin_port, ADMIN_REQUESTS, lambda r: admin_request(r, tokens), SEED + 1)
    assert sum(public.values()) == PUBLIC_REQUESTS and sum(admin.values()) == ADMIN_REQUESTS
    # The generator reaches the interesting answers, not only 400s and 404s.
    assert {302, 301, 400, 404, 405, 410} <= set(public), public
    assert {200, 401, 404, 422} <= set(admin), admin
    print(f"fuzzed {PUBLIC_REQUESTS} public and {ADMIN_REQUESTS} admin requests: {public} / {admin}")
