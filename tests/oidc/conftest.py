"""Sign-in against a real OpenID provider (panva's oidc-provider on node), real gateways on free
loopback ports, a real redis-server and moto's S3 server. `Browser` is an HTTP client that keeps
cookies and resolves `*.localhost` to loopback, as Chromium does, and fills in the IdP's login form."""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar, TCPConnector, web
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.app import build_gateway, create_public_app
from gateway.http.context import Gateway
from gateway.http.runner import GatewayRunner
from gateway.presign import Presigner, credentials_from_chain
from gateway.settings import HostsSettings, OidcSettings, Secret, Settings
from gateway.state.factory import open_store
from gateway.state.redis import RedisAssetStore
from tests.http import conftest as http_fixtures
from tests.http.conftest import Keys, gateway_settings
from tests.idp_server import CLIENT_ID, CLIENT_SECRET, Idp, client_metadata, run_idp
from tests.servers import S3Server, free_port

# The user-token keys the other HTTP tests use (the settings carry them beside sign-in).
user_key_pair = http_fixtures.user_key_pair
keys = http_fixtures.keys

LIVE = "assets.localhost"
DRAFT = "draft-assets.localhost"
OTHER_CLIENT_ID = "other-app"
OTHER_CLIENT_SECRET = "other-app-secret-0123456789abcdef0123"


class LoopbackResolver(AbstractResolver):
    """`*.localhost` and `localhost` → 127.0.0.1, nothing else: the tests never leave the machine."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        if host != "localhost" and not host.endswith(".localhost") and host != "127.0.0.1":
            raise OSError(f"tests resolve only loopback names, not {host}")
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]  # fmt: skip

    async def close(self) -> None:
        return None


@dataclass
class Browser:
    """A person's browser, minus the pixels: cookies per host, redirects followed by hand."""

    session: ClientSession
    visited: list[str] = field(default_factory=list)

    async def get(self, url: str, **kwargs: Any) -> ClientResponse:
        self.visited.append(url)
        response = await self.session.get(url, allow_redirects=False, **kwargs)
        await response.read()
        return response

    async def follow(
        self, url: str, *, until: Callable[[str], bool] | None = None, limit: int = 15
    ) -> ClientResponse:
        """GET `url` and follow redirects; stops at a non-redirect or a Location `until` accepts."""
        response = await self.get(url)
        for _ in range(limit):
            if response.status not in (301, 302, 303, 307):
                return response
            location = urljoin(str(response.url), response.headers["Location"])
            if until is not None and until(location):
                return response
            response = await self.get(location)
        raise AssertionError(f"too many redirects: {self.visited[-limit:]}")

    async def sign_in_at_idp(self, login_page: ClientResponse, user: str) -> ClientResponse:
        """Fill in the IdP's login form as a person would; returns the redirect back to the gateway."""
        html = await login_page.text()
        match = re.search(r'<form[^>]*action="([^"]+)"[^>]*method="post"', html)
        assert match, f"no login form at {login_page.url}"
        action = urljoin(str(login_page.url), unescape(match.group(1)))
        response = await self.session.post(
            action, data={"prompt": "login", "login": user, "password": "any"}, allow_redirects=False
        )
        await response.read()
        return response

    async def open_signed_in(self, url: str, user: str) -> ClientResponse:
        """Open `url`; when sent to sign in, sign in as `user` and follow back. Returns the final
        answer of the gateway (for a file: its 302 to S3, not followed)."""
        response = await self.follow(url, until=lambda location: "/interaction/" in location)
        if response.status in (302, 303) and "/interaction/" in response.headers["Location"]:
            page = await self.get(urljoin(str(response.url), response.headers["Location"]))
            response = await self.sign_in_at_idp(page, user)
            response = await self.follow(
                urljoin(str(response.url), response.headers["Location"]), until=is_s3
            )
        return response

    def cookie(self, name: str, host: str) -> str | None:
        for morsel in self.session.cookie_jar:
            if morsel.key == name and morsel["domain"] in (host, ""):
                return morsel.value
        return None


def is_s3(location: str) -> bool:
    return "X-Amz-Signature=" in location


@pytest.fixture
async def browser_factory() -> AsyncIterator[Callable[[], Awaitable[Browser]]]:
    sessions: list[ClientSession] = []

    async def make() -> Browser:
        session = ClientSession(
            connector=TCPConnector(resolver=LoopbackResolver()), cookie_jar=CookieJar(unsafe=True)
        )
        sessions.append(session)
        return Browser(session)

    yield make
    for session in sessions:
        await session.close()


@dataclass
class SignInWorld:
    """Two gateway ports (A answers the IdP's back-channel logout), one IdP that knows both."""

    idp: Idp
    port_a: int
    port_b: int


@pytest.fixture(scope="module")
def world() -> Iterator[SignInWorld]:
    port_a, port_b, idp_port = free_port(), free_port(), free_port()
    bases = [f"http://{host}:{port}" for port in (port_a, port_b) for host in (DRAFT, LIVE)]
    other = {"client_id": OTHER_CLIENT_ID, "client_secret": OTHER_CLIENT_SECRET,
             "redirect_uris": [f"{base}/oauth2/callback" for base in bases]}  # fmt: skip
    with run_idp(
        idp_port, [client_metadata(bases), other], hosts={DRAFT: "127.0.0.1", LIVE: "127.0.0.1"}
    ) as idp:
        yield SignInWorld(idp, port_a, port_b)


SESSION_SECRET = "session-secret-one-0123456789abcdef0123456789"


def sign_in_settings(
    redis_url: str,
    s3: S3Server,
    keys: Keys,
    idp: Idp,
    port: int,
    *,
    secrets_: tuple[str, ...] = (SESSION_SECRET,),
) -> Settings:
    settings = gateway_settings(redis_url, s3, keys, login={"url": ""})
    return replace(
        settings,
        hosts=HostsSettings(live=(f"{LIVE}:{port}",), draft=(f"{DRAFT}:{port}",)),  # as browsers see them
        oidc=OidcSettings(
            issuer=idp.issuer, client_id=CLIENT_ID, client_secret=Secret(CLIENT_SECRET),
            session_secrets=tuple(Secret(s) for s in secrets_),
        ),
    )  # fmt: skip


@dataclass
class SignInGateway:
    gateway: Gateway
    backend: RedisAssetStore
    runner: web.AppRunner
    port: int
    s3: S3Server
    objects: dict[str, bytes] = field(default_factory=dict)

    def url(self, path: str, host: str = DRAFT) -> str:
        return f"http://{host}:{self.port}{path}"

    async def put(self, asset_id: str, filename: str = "file.pdf", **fields: Any) -> str:
        """Store a record and its object; returns its path."""
        from gateway.records import record_from_dict

        key = f"objects/{asset_id}-{secrets.token_hex(3)}"
        record = record_from_dict({"id": asset_id, "version": 1, "object_key": key, "filename": filename,
                                   "content_type": "application/pdf", **fields})  # fmt: skip
        assert (await self.backend.put(record)).applied
        self.gateway.store.invalidate(asset_id)
        body = f"bytes of {asset_id} {secrets.token_hex(4)}".encode()
        self.s3.client().put_object(Bucket=self.s3.bucket, Key=key, Body=body)
        self.objects[asset_id] = body
        return f"/media/{asset_id}/{filename}"


GatewayFactory = Callable[..., Awaitable[SignInGateway]]


@pytest.fixture
async def start_sign_in_gateway(
    redis_url: str, s3_server: S3Server, keys: Keys, world: SignInWorld
) -> AsyncIterator[GatewayFactory]:
    started: list[SignInGateway] = []

    async def start(port: int | None = None, **options: Any) -> SignInGateway:
        port = port or world.port_a
        settings = sign_in_settings(redis_url, s3_server, keys, world.idp, port, **options)
        backend = open_store(settings.state.url.reveal())
        assert isinstance(backend, RedisAssetStore)
        presigner = Presigner(settings.s3, credentials_from_chain(settings.s3.region))
        gateway = build_gateway(settings, store=backend, presigner=presigner)
        runner = GatewayRunner(create_public_app(gateway))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        running = SignInGateway(gateway, backend, runner, port, s3_server)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        await running.runner.cleanup()


def limited_to(**lists: list[str]) -> dict[str, Any]:
    """Record fields limiting access, e.g. `limited_to(groups=["finance"])`."""
    return {"access_limited": {"users": [], "organisations": [], "groups": [], **lists}}


@pytest.fixture(autouse=True)
def _access_log(caplog: pytest.LogCaptureFixture) -> None:
    """Access lines are captured, so tests can read why a sign-in was refused."""
    from gateway.observability import ACCESS_LOGGER

    caplog.set_level("INFO", logger=ACCESS_LOGGER)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The reasons of the sign-in refusals in the access log so far."""
    import json

    from gateway.observability import ACCESS_LOGGER

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    return [line["reason"] for line in lines if line.get("outcome") in ("sign_in_refused", "logout_refused")]


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
