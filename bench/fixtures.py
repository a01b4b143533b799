"""What the benchmark serves: a gateway config, an RS256 identity-provider key and a token, and
asset records written to Redis in the layout RedisAssetStore reads."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from gateway.models import AccessList, AssetRecord
from gateway.records import record_to_dict
from gateway.settings import Secret, TokenKey
from gateway.state.redis import asset_key
from gateway.tokens import mint_token, new_rsa_pem_pair

LIVE_HOST = "assets.bench.test"
DRAFT_HOST = "draft-assets.bench.test"
ISSUER = "https://idp.bench.test"
AUDIENCE = "asset-gateway"
USER = "bench-user"
REPO = Path(__file__).resolve().parents[1]

PUBLIC_ID = "pub-1"
RESTRICTED_ID = "lim-1"
FILENAME = "annual-report-2024.pdf"
COLD_PREFIX = "cold-"
BULK_PREFIX = "bulk-"
IMPORT_PREFIX = "imp-"


def asset_path(asset_id: str) -> str:
    return f"/media/{asset_id}/{FILENAME}"


def cold_id(n: int) -> str:
    return f"{COLD_PREFIX}{n:05d}"


def bulk_id(n: int, prefix: str = BULK_PREFIX) -> str:
    return f"{prefix}{n:06d}"


def record(asset_id: str, *, users: tuple[str, ...] = ()) -> AssetRecord:
    """A realistic record: uuid object key, PDF, etag, dates, parent page, an older filename."""
    return AssetRecord(
        id=asset_id,
        version=1,
        object_key=str(uuid.uuid5(uuid.NAMESPACE_URL, asset_id)),
        filename=FILENAME,
        filename_history=("annual-report-2024-draft.pdf",),
        content_type="application/pdf",
        access_limited=AccessList(users=users),
        parent_document_url=f"https://www.example.org/government/publications/{asset_id}",
        etag=f'"{asset_id}-1f00"',
        last_modified="2024-01-19T11:15:58Z",
        size=793_600,
    )


def seed(client: redis.Redis, ids: list[str], *, users: tuple[str, ...] = ()) -> None:
    """Write records the way RedisAssetStore.put stores them (hash: version, record JSON)."""
    for start in range(0, len(ids), 5000):
        pipe = client.pipeline(transaction=False)
        for asset_id in ids[start : start + 5000]:
            rec = record(asset_id, users=users)
            payload = json.dumps(record_to_dict(rec), separators=(",", ":"))
            pipe.hset(asset_key(asset_id), mapping={"version": str(rec.version), "record": payload})
        pipe.execute()


def bulk_payloads(start: int, stop: int, prefix: str = BULK_PREFIX) -> Iterator[tuple[str, str]]:
    """(id, record JSON) for bulk ids start..stop-1, each what `record(id)` serialises to, made from
    one template by substitution: a million in seconds instead of a minute of dataclass work."""
    model_id = bulk_id(0, prefix)
    model = record(model_id)
    template = json.dumps(record_to_dict(model), separators=(",", ":"))
    for n in range(start, stop):
        asset_id = bulk_id(n, prefix)
        key = str(uuid.uuid5(uuid.NAMESPACE_URL, asset_id))
        yield asset_id, template.replace(model.object_key, key).replace(model_id, asset_id)


def seed_bulk(client: redis.Redis, start: int, stop: int, *, batch: int = 10_000) -> None:
    """Bulk records start..stop-1 in the layout `seed` writes, pipelined in batches."""
    pipe = client.pipeline(transaction=False)
    for n, (asset_id, payload) in enumerate(bulk_payloads(start, stop), 1):
        pipe.execute_command("HSET", asset_key(asset_id), "version", "1", "record", payload)
        if n % batch == 0:
            pipe.execute()
    pipe.execute()


@dataclass(frozen=True)
class Identity:
    public_pem_path: Path
    user_token: str


def make_identity(directory: Path) -> Identity:
    private, public = new_rsa_pem_pair()
    path = directory / "idp.pem"
    path.write_text(public)
    token_key = TokenKey(use="user", alg="RS256", kid="idp-1", public_key=Secret(public))
    claims = {"sub": USER, "exp": int(time.time()) + 3600, "iss": ISSUER, "aud": AUDIENCE,
              "org": "bench-org", "groups": ["staff"]}  # fmt: skip
    return Identity(path, mint_token(token_key, claims, private))


def write_config(
    directory: Path,
    name: str,
    *,
    port: int,
    admin_port: int,
    redis_url: str,
    identity: Identity,
    cache_ttl: int = 300,
    cache_size: int = 100_000,
    endpoint_url: str = "",
    admin_token: str = "",
) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(
        f"""\
[server]
host = "127.0.0.1"
port = {port}
workers = 1
delivery = "redirect"

[admin]
host = "127.0.0.1"
port = {admin_port}
token = "{admin_token or secrets.token_urlsafe(24)}"

[hosts]
live = ["{LIVE_HOST}"]
draft = ["{DRAFT_HOST}"]

[state]
url = "{redis_url}"
cache_ttl = {cache_ttl}
cache_size = {cache_size}

[s3]
bucket = "assets"
region = "eu-west-2"
endpoint_url = "{endpoint_url}"
presign_ttl = 300

[tokens]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[tokens.keys]]
use = "user"
alg = "RS256"
kid = "idp-1"
public_key = "file:{identity.public_pem_path}"

[[tokens.keys]]
use = "preview"
alg = "HS256"
secret = "{secrets.token_urlsafe(32)}"

[policies]
dir = "{REPO / "policies"}"
"""
    )
    return path


def server_env(directory: Path) -> dict[str, str]:
    """The environment of every Python server: fake S3 credentials (presigning needs no S3 server)
    and no AWS profile or metadata lookups."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GATEWAY_"))}
    env.update(
        AWS_ACCESS_KEY_ID="AKIABENCHMARKEXAMPLE",
        AWS_SECRET_ACCESS_KEY="bench/secret/key/not/used/for/anything/real",  # noqa: S106
        AWS_CONFIG_FILE=str(directory / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(directory / "aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env
