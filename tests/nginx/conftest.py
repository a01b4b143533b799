"""A real nginx, rendered from the shipped templates in nginx/, in front of real gateways, Redis and
moto's S3 server. Between nginx and S3 sits a byte-recording TCP relay, so tests can see exactly what
reached S3 (no token, ever)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
from aiohttp import ClientResponse, ClientSession

from gateway.http.context import Gateway
from gateway.records import record_from_dict
from gateway.state.redis import RedisAssetStore
from tests.http.conftest import LIVE, Keys, gateway_settings, start_gateway
from tests.http.conftest import keys as keys  # fixtures, re-exported for this directory
from tests.http.conftest import user_key_pair as user_key_pair
from tests.servers import RedisServer, S3Server, free_port, require_binary

NGINX_DIR = Path(__file__).resolve().parents[2] / "nginx"
MODES = ("auth_request", "accel")
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")
_REQUEST_HEAD = re.compile(rb"(?:GET|HEAD) [^\r\n]* HTTP/1\.[01]\r\n.*?\r\n\r\n", re.S)


def render_template(text: str, values: Mapping[str, str]) -> str:
    """envsubst restricted to our names: `${NAME}` replaced, nginx's own `$name` left alone."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"template placeholder ${{{name}}} has no value")
        return values[name]

    return _PLACEHOLDER.sub(substitute, text)


@dataclass
class NginxServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def run_nginx(template: str, upstream: str, *, tls: str = "") -> Iterator[NginxServer]:
    """nginx in the foreground, one process, everything (config, logs, pid, temp files) in a
    temporary directory, listening on a free loopback port (with `ssl` when `tls` holds the
    template's certificate lines)."""
    binary = require_binary("nginx")
    with tempfile.TemporaryDirectory(prefix="gateway-nginx-") as tmp:
        directory = Path(tmp)
        port = free_port()
        site = render_template(
            (NGINX_DIR / template).read_text(),
            {
                "ASSET_GATEWAY_LISTEN": f"127.0.0.1:{port}" + (" ssl" if tls else ""),
                "ASSET_GATEWAY_SERVER_NAMES": "_",
                "ASSET_GATEWAY_UPSTREAM": upstream,
                "ASSET_GATEWAY_RESOLVER": "127.0.0.1",
                "ASSET_GATEWAY_ACCESS_LOG": str(directory / "access.log"),
                "ASSET_GATEWAY_TLS": tls,
            },
        )
        (directory / "asset-gateway.conf").write_text(site)
        kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        temp_paths = "\n".join(f"    {kind}_temp_path {directory / kind};" for kind in kinds)
        (directory / "nginx.conf").write_text(
            f"events {{ worker_connections 256; }}\nhttp {{\n{temp_paths}\n"
            f"    include {directory / 'asset-gateway.conf'};\n}}\n"
        )
        settings = (
            f"daemon off; master_process off; pid {directory / 'nginx.pid'}; "
            f"error_log {directory / 'error.log'} info;"
        )
        process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", settings],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = NginxServer(port, directory, process)
        try:
            if not _listening(port, process):
                assert process.stderr is not None
                stderr = process.stderr.read().decode(errors="replace") if process.poll() is not None else ""
                pytest.fail(f"nginx did not start:\n{stderr}\n{server.error_log()}")
            yield server
        finally:
            server.stop()
            if process.stderr is not None:
                process.stderr.close()


def _listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.01)
    return False


class S3Relay:
    """A TCP relay in front of moto's S3 server that keeps every byte sent to S3."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.received: list[bytearray] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def everything(self) -> bytes:
        return b"".join(bytes(part) for part in self.received)

    def request_heads(self) -> list[str]:
        heads = []
        for part in self.received:
            for match in _REQUEST_HEAD.finditer(bytes(part)):
                heads.append(match.group(0).decode("latin-1"))
        return heads

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = bytearray()
        self.received.append(seen)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool) -> None:
            try:
                while chunk := await source.read(65536):
                    if record:
                        seen.extend(chunk)
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    sink.close()

        await asyncio.gather(pipe(reader, upstream_writer, True), pipe(upstream_reader, writer, False))


@dataclass
class Through:
    """One nginx mode, with the gateway it fronts and a redirect-delivery gateway to compare with."""

    mode: str
    nginx: NginxServer
    direct_url: str
    gateways: list[Gateway]
    backend: RedisAssetStore
    s3: S3Server
    relay: S3Relay
    session: ClientSession
    fronted_url: str  # the gateway nginx proxies to (the direct one, or the accel-delivery one)
    objects: dict[str, bytes] = field(default_factory=dict)

    async def put(self, **fields: Any) -> Any:
        """Store a record (and, unless `body=None`, its object in the bucket)."""
        body = fields.pop("body", f"contents of {fields['id']} ".encode() * 7)
        data = {"version": 1, "object_key": f"objects/{fields['id']}-{secrets.token_hex(3)}",
                "filename": "file.pdf", "content_type": "application/pdf", **fields}  # fmt: skip
        record = record_from_dict(data)
        assert (await self.backend.put(record)).applied
        for gateway in self.gateways:
            gateway.store.invalidate(record.id)
            if record.legacy_url_path is not None:
                gateway.store.invalidate(record.legacy_url_path)
        if body is not None:
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=record.object_key, Body=body)
            self.objects[record.id] = body
        return record

    async def direct(self, path: str, *, host: str = LIVE, method: str = "GET", **headers: str) -> Answer:
        return await self._fetch(self.direct_url, path, host, method, headers)

    async def fronted(self, path: str, *, host: str = LIVE, method: str = "GET", **headers: str) -> Answer:
        return await self._fetch(self.fronted_url, path, host, method, headers)

    async def via_nginx(self, path: str, *, host: str = LIVE, method: str = "GET", **headers: str) -> Answer:
        return await self._fetch(self.nginx.base_url, path, host, method, headers)

    async def _fetch(self, base: str, path: str, host: str, method: str, headers: dict[str, str]) -> Answer:
        async with self.session.request(
            method, base + path, headers={"Host": host, **headers}, allow_redirects=False
        ) as response:
            return await Answer.read(response)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    @classmethod
    async def read(cls, response: ClientResponse) -> Answer:
        headers: dict[str, list[str]] = {}
        for name, value in response.raw_headers:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        return cls(response.status, headers, await response.read())

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        if not values:
            return None
        assert len(values) == 1, f"{name} sent {len(values)} times: {values}"
        return values[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=MODES)
async def nginx_stack(
    request: pytest.FixtureRequest, redis_server: RedisServer, s3_server: S3Server, keys: Keys
) -> AsyncIterator[Through]:
    """Built once per module and mode (starting nginx and two gateways per test would triple the
    suite's time); `through` hands it to each test with Redis, caches and records emptied."""
    mode: str = request.param
    with pytest.MonkeyPatch.context() as patch:  # as the autouse fixture does, for this wider scope
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        async for stack in _nginx_stack(mode, redis_server, s3_server, keys):
            yield stack


async def _nginx_stack(
    mode: str, redis_server: RedisServer, s3_server: S3Server, keys: Keys
) -> AsyncIterator[Through]:
    relay = S3Relay(int(s3_server.endpoint_url.rsplit(":", 1)[1]))
    await relay.start()
    s3_via_relay = S3Server(relay.endpoint_url, s3_server.bucket, s3_server.region)
    direct_settings = gateway_settings(redis_server.url, s3_via_relay, keys)
    runners = []
    direct_runner, direct_gateway, backend, direct_url = await start_gateway(direct_settings, s3_via_relay)
    runners.append(direct_runner)
    gateways = [direct_gateway]
    fronted_url = direct_url
    if mode == "accel":
        accel_settings = gateway_settings(redis_server.url, s3_via_relay, keys, server={"delivery": "accel"})
        accel_runner, accel_gateway, _, fronted_url = await start_gateway(accel_settings, s3_via_relay)
        runners.append(accel_runner)
        gateways.append(accel_gateway)
    try:
        with run_nginx(f"{mode}.conf.template", fronted_url.removeprefix("http://")) as nginx:
            async with ClientSession() as session:
                yield Through(
                    mode, nginx, direct_url, gateways, backend, s3_server, relay, session, fronted_url
                )
    finally:
        for runner in runners:
            await runner.cleanup()
        await relay.close()


@pytest.fixture
def through(nginx_stack: Through, redis_server: RedisServer) -> Through:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    for gateway in nginx_stack.gateways:
        gateway.store.clear()
    nginx_stack.relay.received.clear()
    nginx_stack.objects.clear()
    return nginx_stack
