"""A real gateway on a free loopback port, in front of a real redis-server and moto's S3 server."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, web

from gateway.app import build_gateway, create_admin_app, create_public_app
from gateway.http.context import Gateway
from gateway.http.runner import GatewayRunner
from gateway.models import AssetRecord
from gateway.presign import Presigner, credentials_from_chain
from gateway.records import record_from_dict
from gateway.settings import (
    HostsSettings,
    LoginSettings,
    PoliciesSettings,
    S3Settings,
    Secret,
    Settings,
    StateSettings,
    TokenKey,
    TokensSettings,
)
from gateway.state.factory import open_store
from gateway.state.redis import RedisAssetStore
from gateway.tokens import mint_token, new_rsa_pem_pair
from tests.servers import S3Server, free_port

LIVE = "assets.test"
DRAFT = "draft-assets.test"
LOGIN_URL = "https://signon.test/login"
ISSUER = "https://idp.test"
AUDIENCE = "asset-gateway"
POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="session")
def user_key_pair() -> tuple[str, str]:
    return new_rsa_pem_pair()


@dataclass
class Keys:
    user: TokenKey
    preview: TokenKey
    user_private_pem: str
    user_public_pem: str

    def user_token(self, sub: str = "editor-1", *, ttl: int = 600, **claims: Any) -> str:
        body = {"sub": sub, "exp": int(time.time()) + ttl, "iss": ISSUER, "aud": AUDIENCE, **claims}
        return mint_token(self.user, body, self.user_private_pem)

    def preview_token(self, sub: str, *, ttl: int = 600, **claims: Any) -> str:
        return mint_token(self.preview, {"sub": sub, "exp": int(time.time()) + ttl, **claims})


@pytest.fixture(scope="session")
def keys(user_key_pair: tuple[str, str]) -> Keys:
    private, public = user_key_pair
    return Keys(
        user=TokenKey(use="user", alg="RS256", kid="idp-1", public_key=Secret(public)),
        preview=TokenKey(use="preview", alg="HS256", secret=Secret(secrets.token_urlsafe(32))),
        user_private_pem=private,
        user_public_pem=public,
    )


def gateway_settings(redis_url: str, s3: S3Server, keys: Keys, **overrides: Any) -> Settings:
    settings = Settings(
        hosts=HostsSettings(live=(LIVE,), draft=(DRAFT,)),
        state=StateSettings(url=Secret(redis_url), cache_ttl=30, cache_size=1000),
        s3=S3Settings(bucket=s3.bucket, region=s3.region, endpoint_url=s3.endpoint_url, presign_ttl=300),
        tokens=TokensSettings(issuer=ISSUER, audience=AUDIENCE, keys=(keys.user, keys.preview)),
        policies=PoliciesSettings(dir=str(POLICIES)),
        login=LoginSettings(url=LOGIN_URL),
    )
    for section, values in overrides.items():
        settings = replace(settings, **{section: replace(getattr(settings, section), **values)})
    return settings


@dataclass
class RunningGateway:
    base_url: str
    gateway: Gateway
    backend: RedisAssetStore
    s3: S3Server
    session: ClientSession
    objects: dict[str, bytes] = field(default_factory=dict)
    runner: GatewayRunner | None = None

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    async def put(self, **fields: Any) -> AssetRecord:
        """Store a record (and, unless `body=None`, its object in the bucket)."""
        body = fields.pop("body", f"contents of {fields['id']}".encode())
        data = {"version": 1, "object_key": f"objects/{fields['id']}-{secrets.token_hex(3)}",
                "filename": "file.pdf", "content_type": "application/pdf", **fields}  # fmt: skip
        record = record_from_dict(data)
        result = await self.backend.put(record)
        assert result.applied
        self.gateway.store.invalidate(record.id)
        if body is not None:
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=record.object_key, Body=body)
            self.objects[record.id] = body
        return record

    async def get(self, path: str, *, host: str = LIVE, method: str = "GET", **headers: str) -> Any:
        return await self.session.request(
            method, self.base_url + path, headers={"Host": host, **headers}, allow_redirects=False
        )


async def start_gateway(
    settings: Settings, s3: S3Server
) -> tuple[GatewayRunner, Gateway, RedisAssetStore, str]:
    backend = open_store(settings.state.url.reveal())
    assert isinstance(backend, RedisAssetStore)
    gateway = build_gateway(
        settings,
        store=backend,
        presigner=Presigner(settings.s3, credentials_from_chain(settings.s3.region)),
    )
    runner = GatewayRunner(create_public_app(gateway))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, gateway, backend, f"http://127.0.0.1:{port}"


@pytest.fixture
async def running(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings(redis_url, s3_server, keys)
    runner, gateway, backend, base_url = await start_gateway(settings, s3_server)
    async with ClientSession() as session:
        yield RunningGateway(base_url, gateway, backend, s3_server, session, runner=runner)
    await runner.cleanup()


ADMIN_TOKEN = "admin-" + secrets.token_hex(16)


def body(asset_id: str, version: int = 1, **fields: Any) -> dict[str, Any]:
    return {"id": asset_id, "version": version, "object_key": f"objects/{asset_id}",
            "filename": "file.pdf", "content_type": "application/pdf", **fields}  # fmt: skip


@dataclass
class Admin:
    url: str
    session: ClientSession
    public: RunningGateway

    async def call(
        self, method: str, asset_id: str, payload: Any = None, *, raw: bytes | None = None,
        token: str | None = ADMIN_TOKEN, headers: dict[str, str] | None = None, **params: str,
    ) -> tuple[int, Any, ClientResponse]:  # fmt: skip
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
        async with self.session.request(
            method, f"{self.url}/assets/{asset_id}", data=data, headers=sent, params=params
        ) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None), response

    async def stored(self, asset_id: str) -> dict[str, Any] | None:
        status, answer, _ = await self.call("GET", asset_id)
        assert status in (200, 404)
        return answer if status == 200 else None


@pytest.fixture
async def admin(redis_url: str, s3_server: S3Server, keys: Keys) -> AsyncIterator[Admin]:
    settings = gateway_settings(redis_url, s3_server, keys, admin={"token": Secret(ADMIN_TOKEN)})
    runner, gateway, backend, base_url = await start_gateway(settings, s3_server)
    admin_runner = GatewayRunner(create_admin_app(gateway))
    await admin_runner.setup()
    port = free_port()
    await web.TCPSite(admin_runner, "127.0.0.1", port).start()
    await asyncio.wait_for(gateway.invalidations.subscribed.wait(), 5)
    async with ClientSession() as session:
        public = RunningGateway(base_url, gateway, backend, s3_server, session)
        yield Admin(f"http://127.0.0.1:{port}", session, public)
    await admin_runner.cleanup()
    await runner.cleanup()
