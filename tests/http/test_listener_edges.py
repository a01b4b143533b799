"""Both listeners at the connection level, over real sockets: slow, idle and too many clients are
closed or refused (DESIGN 2.2 limits), and every answer, aiohttp's own refusals and the router's
404s included, carries our Server header, no-store on errors, a request id and one access line.
No input may produce a 500 on either listener."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from gateway.app import create_admin_app
from gateway.http.context import Gateway
from gateway.http.runner import GatewayRunner
from gateway.observability import ACCESS_LOGGER
from gateway.records import record_from_dict
from gateway.settings import Secret
from tests.http.conftest import LIVE, Keys, gateway_settings, start_gateway
from tests.servers import S3Server, free_port

ADMIN_TOKEN = "admin-" + secrets.token_hex(16)
DEADLINE = 10.0  # seconds a test waits for the server to act before it fails


@dataclass
class Listeners:
    public_port: int
    admin_port: int
    gateway: Gateway
    public: GatewayRunner
    admin: GatewayRunner


async def listen_both(
    redis_url: str, s3: S3Server, keys: Keys, server: dict[str, object], admin: dict[str, object]
) -> AsyncIterator[Listeners]:
    settings = gateway_settings(
        redis_url, s3, keys, server=server, admin={"token": Secret(ADMIN_TOKEN), **admin}
    )
    runner, gateway, _, base_url = await start_gateway(settings, s3)
    admin_runner = GatewayRunner(create_admin_app(gateway), name="admin")
    await admin_runner.setup()
    admin_port = free_port()
    await web.TCPSite(admin_runner, "127.0.0.1", admin_port).start()
    yield Listeners(int(base_url.rsplit(":", 1)[1]), admin_port, gateway, runner, admin_runner)
    await admin_runner.cleanup()
    await runner.cleanup()


@pytest.fixture
async def listeners(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[Listeners]:
    async for running in listen_both(redis_url, s3_server, keys, {}, {}):
        yield running


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes or answers one request)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), DEADLINE)
        return status, headers, body
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (EOF), within the deadline."""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), DEADLINE)
        if not chunk:
            return True


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]


def assert_ours(status: int, headers: dict[str, str]) -> None:
    assert headers["server"] == "asset-gateway"
    assert headers["x-request-id"]
    if status >= 400:
        assert "no-store" in headers["cache-control"]


# ---- header hygiene (defect 11) and no 500s (defect 9)

PUBLIC_ODDITIES = [
    (b"GET /media/a%0ab/x.pdf HTTP/1.1\r\nHost: " + LIVE.encode() + b"\r\n\r\n", 404),
    (b"GET /%0a HTTP/1.1\r\nHost: " + LIVE.encode() + b"\r\n\r\n", 404),
    (b"GET /media/a1/x.pdf HTTP/1.1\r\nHost: " + LIVE.encode() + b"\r\nBad Header\r\n\r\n", 400),
    (b"GET /media/a1/" + b"x" * 9000 + b".pdf HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /media/a1/x.pdf HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 400),
    (b"PROPFIND /media/a1/x.pdf HTTP/1.1\r\nHost: " + LIVE.encode() + b"\r\n\r\n", 405),
    (b"GET /media/a1/x.pdf HTTP/9.9\r\nHost: a\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS on the plain port
]


@pytest.mark.parametrize(("raw", "expected"), PUBLIC_ODDITIES)
async def test_public_answers_are_ours_whatever_the_request(
    listeners: Listeners, caplog: pytest.LogCaptureFixture, raw: bytes, expected: int
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    status, headers, body = await exchange(listeners.public_port, raw)
    assert status == expected
    assert_ours(status, headers)
    assert b"Traceback" not in body and b"x" * 100 not in body and b"y" * 100 not in body
    lines = access_lines(caplog)
    assert [line["request_id"] for line in lines] == [headers["x-request-id"]]
    assert lines[0]["status"] == status


AUTHORIZED = b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
ADMIN_ODDITIES = [
    (b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", 401),  # deny by default: no token, no route map
    (b"GET /nope HTTP/1.1\r\nHost: a\r\n" + AUTHORIZED + b"\r\n", 404),
    (b"GET /%0a HTTP/1.1\r\nHost: a\r\n" + AUTHORIZED + b"\r\n", 404),
    (b"PATCH /metrics HTTP/1.1\r\nHost: a\r\n" + AUTHORIZED + b"\r\n", 405),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    (b"GET /assets/a1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \xff\r\n\r\n", 401),
    (b"GET /assets/a1 HTTP/1.1\r\nHost: a\r\nAuthorization: \xff\xfe \xc3\x28\r\n\r\n", 401),
    (b"GET /assets/a1 HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", 400),
    (b"DELETE /assets/x?version=" + b"9" * 5000 + b" HTTP/1.1\r\nHost: a\r\n" + AUTHORIZED + b"\r\n", 422),
    (b"DELETE /assets/x?version=1" + b"0" * 19 + b" HTTP/1.1\r\nHost: a\r\n" + AUTHORIZED + b"\r\n", 422),
    # a non-ASCII digit
    (b"DELETE /assets/x?version=%F0%9D%9F%99 HTTP/1.1\r\nHost: a\r\n" + AUTHORIZED + b"\r\n", 422),
    # an integer past Python's 4,300 digits in a JSON body
    (
        b"PUT /assets/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6013\r\n" + AUTHORIZED + b"\r\n"
        b'{"version": ' + b"9" * 6000 + b"}",
        400,
    ),
    (b"GET /explain?url=%ff%fe HTTP/1.1\r\nHost: a\r\n" + AUTHORIZED + b"\r\n", 400),
]


@pytest.mark.parametrize(("raw", "expected"), ADMIN_ODDITIES)
async def test_admin_answers_are_ours_and_never_500(
    listeners: Listeners, caplog: pytest.LogCaptureFixture, raw: bytes, expected: int
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    status, headers, body = await exchange(listeners.admin_port, raw)
    assert status == expected
    assert_ours(status, headers)
    assert b"Traceback" not in body and b"9" * 50 not in body
    lines = access_lines(caplog)
    assert [line["request_id"] for line in lines] == [headers["x-request-id"]]


# ---- limits (defect 4, DESIGN 2.2)


@pytest.fixture
async def tight(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[Listeners]:
    """Small limits on the public listener; the admin listener keeps its own (larger) cap."""
    server = {"header_timeout": 0.5, "keepalive_timeout": 60.0, "max_connections": 3}
    async for running in listen_both(redis_url, s3_server, keys, server, {"max_connections": 50}):
        yield running


async def test_a_client_that_sends_nothing_is_closed(tight: Listeners) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight.public_port)
    assert await closed_by_server(reader)  # header_timeout, well before keepalive_timeout
    writer.close()
    assert getattr(tight.public.server, "timed_out", None) == 1


async def test_a_slow_header_client_is_closed(tight: Listeners) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tight.public_port)
    writer.write(b"GET /media/a1/x.pdf HTTP/1.1\r\nHost: ")
    await writer.drain()
    assert await closed_by_server(reader)
    writer.close()


async def test_a_client_idle_after_an_answer_is_closed_after_keepalive(
    redis_url: str, s3_server: S3Server, keys: Keys
) -> None:
    server = {"header_timeout": 60.0, "keepalive_timeout": 0.5}
    async for running in listen_both(redis_url, s3_server, keys, server, {}):
        reader, writer = await asyncio.open_connection("127.0.0.1", running.public_port)
        writer.write(f"GET /media/a1/x.pdf HTTP/1.1\r\nHost: {LIVE}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
        assert head.startswith(b"HTTP/1.1 404")
        assert await closed_by_server(reader)
        writer.close()


async def test_a_slow_request_after_keepalive_gets_the_header_timeout(
    redis_url: str, s3_server: S3Server, keys: Keys
) -> None:
    server = {"header_timeout": 0.5, "keepalive_timeout": 60.0}
    async for running in listen_both(redis_url, s3_server, keys, server, {}):
        reader, writer = await asyncio.open_connection("127.0.0.1", running.public_port)
        writer.write(f"GET /media/a1/x.pdf HTTP/1.1\r\nHost: {LIVE}\r\n\r\n".encode())
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
        writer.write(b"GET /media/a1/x.pdf HTTP/1.1\r\n")  # the next request, never finished
        assert await closed_by_server(reader)
        writer.close()


async def test_a_full_public_listener_refuses_and_admin_stays_reachable(tight: Listeners) -> None:
    held = [await asyncio.open_connection("127.0.0.1", tight.public_port) for _ in range(3)]
    # A live request on one of them: the listener serves the connections it holds.
    held[0][1].write(f"GET /media/a1/x.pdf HTTP/1.1\r\nHost: {LIVE}\r\n\r\n".encode())
    assert (await asyncio.wait_for(held[0][0].readuntil(b"\r\n\r\n"), DEADLINE)).startswith(b"HTTP/1.1 404")

    request = f"GET / HTTP/1.1\r\nHost: {LIVE}\r\n\r\n".encode()
    status, headers, _ = await exchange(tight.public_port, request)
    assert status == 503
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert_ours(status, headers)
    health, _, _ = await exchange(tight.admin_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert health == 200

    for _, writer in held:
        writer.close()
    # Once they are gone the listener takes connections again.
    while True:
        status, _, _ = await exchange(tight.public_port, f"GET /x HTTP/1.1\r\nHost: {LIVE}\r\n\r\n".encode())
        if status == 404:
            break
        assert status == 503
        await asyncio.sleep(0.01)
    assert tight.public.open_connections <= 3


# ---- the Cookie header (defect 1): read in linear time, over real HTTP


async def test_pathological_cookie_headers_still_carry_the_session(
    redis_url: str, s3_server: S3Server, keys: Keys
) -> None:
    """The CVE-2024-7592 header and 1,800 pairs, on a listener that admits headers that long: the
    session cookie after them is read and opens an access-limited file (correct and complete)."""
    async for running in listen_both(redis_url, s3_server, keys, {"max_header_size": 32768}, {}):
        store = running.gateway.store
        record = {"id": "lim1", "version": 1, "object_key": "objects/lim1", "filename": "l.pdf",
                  "access_limited": {"users": ["u1"]}}  # fmt: skip
        assert (await store.put(record_from_dict(record))).applied
        session = keys.user_token("u1")
        for junk in ('a="' + "\\" * 16000 + '"', "; ".join(f"c{n}=v" for n in range(1800))):
            for cookie in (f"{junk}; gateway_session={session}", junk):
                request = f"GET /media/lim1/l.pdf HTTP/1.1\r\nHost: {LIVE}\r\nCookie: {cookie}\r\n\r\n"
                status, headers, _ = await exchange(running.public_port, request.encode())
                assert status == (302 if "gateway_session" in cookie else 404)
                assert_ours(status, headers)
