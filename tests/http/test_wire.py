"""Warm answers written by the connection layer (gateway.http.runner, gateway.http.shortcut,
gateway.http.wire), over real sockets: the bytes are the ones aiohttp writes for the same answer,
pipelined requests are answered in order whatever path each takes, HEAD has no body, a request
that asks to close the connection is aiohttp's, and keep-alive deadlines still hold."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from gateway.http import wire
from gateway.observability import ACCESS_LOGGER
from tests.http.conftest import LIVE, Keys, RunningGateway
from tests.http.test_listener_edges import DEADLINE, closed_by_server, listen_both
from tests.servers import S3Server
from tests.waiting import until

Answer = tuple[str, list[tuple[str, str]], bytes]  # status line, headers in order, body


async def read_answer(reader: asyncio.StreamReader, *, head_only: bool = False) -> Answer:
    """One HTTP/1.1 response off a keep-alive connection (its body per Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in lines if line)]
    length = next((int(value) for name, value in headers if name.lower() == "content-length"), 0)
    body = b"" if head_only else await asyncio.wait_for(reader.readexactly(length), DEADLINE)
    return status, headers, body


def on_wire(running: RunningGateway) -> int:
    """Requests the public listener has answered on the wire so far."""
    assert running.runner is not None
    return running.runner.answered_on_wire


async def settled(running: RunningGateway) -> None:
    """Until every connection waits for its next request: after an answer aiohttp wrote, its
    handler task takes a loop turn or two to get there, and a request arriving before then is
    (rightly) queued for aiohttp rather than answered on the wire."""
    assert running.runner is not None and running.runner.server is not None
    server = running.runner.server
    await until(lambda: all(c.idle() for c in server.connections), what="connections idle")  # type: ignore[attr-defined]


def request(path: str, *, method: str = "GET", host: str = LIVE, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def comparable(answer: Answer) -> tuple[str, list[tuple[str, str]], bytes]:
    """What must match between two answers to one request: all but Date, the request id and the
    max-age that may tick down between them; header order is not part of HTTP's meaning."""
    status, headers, body = answer
    kept = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("date", "x-request-id"):
            continue
        if lowered in ("cache-control", "x-asset-cache-control"):
            value = value.partition("max-age=")[0]
        kept.append((lowered, value))
    return status, sorted(kept), body


# ---- the serialisation, against aiohttp writing the same web.Response


CASES = [
    (
        302,
        {"Location": "https://s3.example/x?X-Amz-Signature=ab", "Cache-Control": "public, max-age=30"},
        None,
    ),
    (301, {"Location": "/media/a/b.pdf", "Cache-Control": "private, no-store"}, None),
    (204, {"X-Asset-Status": "200", "X-Asset-Location": "https://s3.example/x"}, None),
    (304, {"ETag": '"abc"', "Cache-Control": "public, max-age=10"}, None),
    (401, {"X-Asset-Status": "302"}, None),
    (
        404,
        {"Cache-Control": "private, no-store", "Content-Type": "text/plain; charset=utf-8"},
        b"Not Found\n",
    ),
    (410, {"Cache-Control": "private, no-store"}, b"Gone\n"),  # no Content-Type: aiohttp adds one
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(("status", "headers", "body"), CASES)
async def test_the_wire_bytes_are_aiohttps(
    method: str, status: int, headers: dict[str, str], body: bytes | None
) -> None:
    async def handler(request: web.Request) -> web.Response:
        response = web.Response(status=status, body=body, headers=headers)
        response.headers["Server"] = "asset-gateway"
        return response

    app = web.Application()
    app.router.add_route("*", "/", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request("/", method=method, host="x"))
        by_aiohttp = await read_answer(reader, head_only=not wire.sends_body(status, method))
        writer.close()
    head = wire.head(status, [*headers.items(), ("Server", "asset-gateway")], body, method)
    ours = head + b"\r\n" + (body if body and wire.sends_body(status, method) else b"")
    parsed = await read_answer(_reader_of(ours), head_only=not wire.sends_body(status, method))
    assert comparable(parsed) == comparable(by_aiohttp)


def _reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_headers_the_connection_layer_writes_or_cannot_are_refused() -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        wire.head(200, [("Content-Length", "3")], b"abc", "GET")
    with pytest.raises(ValueError, match="line break"):
        wire.head(302, [("Location", "/a\r\nSet-Cookie: x=y")], None, "GET")


# ---- the public listener


@pytest.mark.parametrize(
    ("asset_id", "asked", "status"),
    [
        ("w1", request("/media/w1/a.pdf"), "HTTP/1.1 302 Found"),
        ("w2", request("/auth", extra="X-Original-URI: /media/w2/a.pdf\r\nX-Original-Method: GET\r\n"),
         "HTTP/1.1 204 No Content"),
    ],
)  # fmt: skip
async def test_a_warm_hit_is_written_as_the_full_answer_was(
    running: RunningGateway, asset_id: str, asked: bytes, status: str
) -> None:
    await running.put(id=asset_id, filename="a.pdf")
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(asked)
        first = await read_answer(reader)
        await settled(running)
        before = on_wire(running)
        writer.write(asked)
        second = await read_answer(reader)
        assert on_wire(running) == before + 1
        assert first[0] == status
        assert comparable(second) == comparable(first)
        ids = [dict(answer[1])["X-Request-Id"] for answer in (first, second)]
        assert ids[0] != ids[1]
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_whichever_path_each_takes(
    running: RunningGateway,
) -> None:
    await running.put(id="w3", filename="a.pdf")
    await running.put(id="w4", filename="b.pdf")
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(request("/media/w3/a.pdf"))
        warm = await read_answer(reader)
        await settled(running)
        before = on_wire(running)
        # A hit, a miss that must read Redis, a hit: the second hit must wait for the miss.
        writer.write(request("/media/w3/a.pdf") + request("/media/w4/b.pdf") + request("/media/w3/a.pdf"))
        answers = [await read_answer(reader) for _ in range(3)]
        locations = [dict(answer[1])["Location"] for answer in answers]
        assert locations[0] == locations[2] == dict(warm[1])["Location"]
        assert "w4" in locations[1]
        assert [answer[0] for answer in answers] == ["HTTP/1.1 302 Found"] * 3
        assert on_wire(running) == before + 1  # only the first; the rest queued
    finally:
        writer.close()


async def test_a_hit_arriving_while_a_miss_is_being_answered_waits_for_it(
    running: RunningGateway, redis_url: str
) -> None:
    await running.put(id="w8", filename="a.pdf")
    await running.put(id="w9", filename="b.pdf")
    pauser = Redis.from_url(redis_url)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(request("/media/w8/a.pdf"))
        await read_answer(reader)
        misses = running.gateway.store.misses
        await pauser.execute_command("CLIENT", "PAUSE", 600, "ALL")  # the miss's Redis read waits
        writer.write(request("/media/w9/b.pdf"))
        await until(lambda: running.gateway.store.misses > misses, what="the miss reached the store")
        writer.write(request("/media/w8/a.pdf"))  # a hit, in a read of its own
        first, second = await read_answer(reader), await read_answer(reader)
        # In request order (were the hit answered at once, it would come first).
        assert "w9" in dict(first[1])["Location"] and "w8" in dict(second[1])["Location"]
    finally:
        writer.close()
        await pauser.aclose()


async def test_more_pipelined_hits_than_the_parsers_queue_are_all_answered(running: RunningGateway) -> None:
    await running.put(id="w5", filename="a.pdf")
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(request("/media/w5/a.pdf"))
        await read_answer(reader)
        await settled(running)
        before = on_wire(running)
        writer.write(request("/media/w5/a.pdf") * 100)  # aiohttp's parser stops at 32 queued
        statuses = [(await read_answer(reader))[0] for _ in range(100)]
        assert statuses == ["HTTP/1.1 302 Found"] * 100
        assert on_wire(running) == before + 100
    finally:
        writer.close()


async def test_a_head_hit_has_no_body_and_the_connection_stays_in_step(running: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        missing = "/media/nope1/x.pdf"
        writer.write(request(missing, method="HEAD"))
        first = await read_answer(reader, head_only=True)
        await settled(running)
        before = on_wire(running)
        writer.write(request(missing, method="HEAD") + request(missing))
        second = await read_answer(reader, head_only=True)
        after = await read_answer(reader)  # parsed right only if the HEAD answer sent no body
        assert on_wire(running) == before + 1
        assert first[0] == second[0] == after[0] == "HTTP/1.1 404 Not Found"
        assert comparable(second) == comparable(first)
        assert dict(second[1])["Content-Length"] == str(len(after[2])) == dict(after[1])["Content-Length"]
        assert after[2] == b"Not Found\n"
    finally:
        writer.close()


async def test_a_hit_asking_to_close_is_answered_by_aiohttp_and_closed(running: RunningGateway) -> None:
    await running.put(id="w6", filename="a.pdf")
    await running.get("/media/w6/a.pdf")  # warm
    before = on_wire(running)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(request("/media/w6/a.pdf", extra="Connection: close\r\n"))
        answer = await read_answer(reader)
        assert answer[0] == "HTTP/1.1 302 Found"
        assert dict(answer[1])["Connection"] == "close"
        assert await closed_by_server(reader)
        assert on_wire(running) == before
    finally:
        writer.close()


async def test_a_wire_hit_is_logged_like_a_full_answer(
    running: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    await running.put(id="w7", filename="a.pdf")
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        with caplog.at_level("INFO", logger=ACCESS_LOGGER):
            for _ in range(2):
                await settled(running)
                before = on_wire(running)
                writer.write(request("/media/w7/a.pdf", extra="User-Agent: probe/1\r\n"))
                await read_answer(reader)
        assert on_wire(running) == before + 1  # the second
    finally:
        writer.close()
    full, hit = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    for line in (full, hit):
        for varying in ("ts", "request_id", "duration_ms"):
            line.pop(varying)
    assert hit == full
    assert hit["client_ip"] == "127.0.0.1" and hit["user_agent"] == "probe/1"


async def test_a_connection_kept_busy_by_wire_hits_outlives_its_keepalive_timeout(
    redis_url: str, s3_server: S3Server, keys: Keys
) -> None:
    server: dict[str, object] = {"keepalive_timeout": 1.0}
    async for listeners in listen_both(redis_url, s3_server, keys, server, {}):
        reader, writer = await asyncio.open_connection("127.0.0.1", listeners.public_port)
        missing = request("/media/nope2/x.pdf")
        writer.write(missing)
        await read_answer(reader)
        for _ in range(8):  # 2 s of a request every 0.25 s: never idle for 1 s
            await asyncio.sleep(0.25)
            writer.write(missing)
            assert (await read_answer(reader))[0] == "HTTP/1.1 404 Not Found"
        assert listeners.public.answered_on_wire == 8
        assert await closed_by_server(reader)  # and once idle, closed
        writer.close()
