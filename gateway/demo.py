"""`asset-gateway demo`: the whole product on one machine with nothing to set up. moto's S3 server
runs in-process on a free loopback port, the in-memory store holds one example of every case, and
the printed table shows a ready-to-paste curl line for each with the answer it gives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from gateway.app import build_gateway, create_admin_app, create_public_app
from gateway.dev_idp import start_dev_idp
from gateway.http.context import GATEWAY
from gateway.http.runner import GatewayRunner
from gateway.models import AccessList, AssetRecord
from gateway.observability import configure_logging
from gateway.policy.reload import CurrentPolicy
from gateway.presign import Presigner, credentials_from_chain
from gateway.records import record_to_dict
from gateway.runtime import install_stop_signals, run_async
from gateway.settings import (
    AdminSettings,
    HostsSettings,
    LoginSettings,
    OidcSettings,
    PoliciesSettings,
    S3Settings,
    Secret,
    ServerSettings,
    Settings,
    StateSettings,
    TokenKey,
    TokensSettings,
)
from gateway.state.memory import MemoryAssetStore
from gateway.tokens import mint_token, new_rsa_pem_pair

LIVE_HOST = "assets.localhost"
DRAFT_HOST = "draft-assets.localhost"
BUCKET = "demo-assets"
REGION: Final = "eu-west-2"  # Final: a Literal, as boto3-stubs want for LocationConstraint
LOGIN_URL = "https://signon.example.org/login"
BYPASS_ID = "bypass-5f2e"
# The development IdP's users: the same people as the demo's ready-made tokens.
DEMO_USERS: Final = {
    "ada": {"name": "Ada (finance)", "org": "hmt", "groups": ["finance"]},
    "bob": {"name": "Bob (comms)", "org": "dfe", "groups": ["comms"]},
}
DEMO_CLIENT_ID = "asset-gateway-demo"
DEFAULT_POLICIES = Path(__file__).resolve().parent.parent / "policies"


@dataclass(frozen=True)
class DemoFile:
    record: AssetRecord
    body: bytes | None  # None: no object in the bucket


LEGACY_DEMO_PATH = "/government/uploads/system/uploads/attachment_data/file/123/spring-budget.pdf"
LEGACY_DEMO_IMAGE = "/government/uploads/system/uploads/image_data/file/124/chart.png"


def demo_files() -> list[DemoFile]:
    """One example of every case in DESIGN 2.6."""

    def record(asset_id: str, filename: str, **fields: Any) -> AssetRecord:
        defaults: dict[str, Any] = {
            "version": 1,
            "object_key": f"uploads/{asset_id}-{secrets.token_hex(4)}",
            "content_type": "application/pdf" if filename.endswith(".pdf") else "text/csv",
            "etag": f'"{asset_id}-v1"',
            "last_modified": "2018-01-19T11:15:58Z",
        }
        return AssetRecord(id=asset_id, filename=filename, **{**defaults, **fields})

    def pdf(title: str) -> bytes:
        return f"%PDF-1.4\n% demo file: {title}\n%%EOF\n".encode()

    files = [
        DemoFile(record("5a1b2c", "budget.pdf", filename_history=("budget-draft.pdf",)), pdf("budget")),
        DemoFile(record("d7a9f0", "draft-plan.pdf", draft=True), pdf("draft plan")),
        DemoFile(
            record("p1e4c0", "preview-me.pdf", draft=True, auth_bypass_ids=(BYPASS_ID,)), pdf("preview")
        ),
        DemoFile(
            record("a1c3e5", "salaries.csv", access_limited=AccessList(groups=("finance",))),
            b"name,salary\nada,100\n",
        ),
        DemoFile(record("0ld123", "report-2023.pdf", replacement_id="n3w456"), pdf("old report")),
        DemoFile(record("n3w456", "report-2024.pdf"), pdf("new report")),
        DemoFile(
            record("r3d1r3", "moved.pdf", redirect_url="https://www.example.org/government/publications"),
            None,
        ),
        DemoFile(record("de1e7e", "withdrawn.pdf", deleted=True), None),
        DemoFile(record("5ca9ed", "just-uploaded.pdf", state="unscanned"), pdf("unscanned")),
        DemoFile(
            record("f0reca", "forecast.pdf", draft=True, access_limited=AccessList(groups=("finance",))),
            pdf("finance forecast (draft, finance only)"),
        ),
        # Migrated Whitehall attachments (DESIGN 2.8), still linked by their old URLs.
        DemoFile(
            record("w1a7e1", "spring-budget.pdf", legacy_url_path=LEGACY_DEMO_PATH, legacy_etag='"nfs-123"'),
            pdf("spring budget"),
        ),
        DemoFile(record("w1a7e2", "chart.png", state="clean", legacy_url_path=LEGACY_DEMO_IMAGE), None),
    ]
    return files


@dataclass
class DemoCase:
    title: str
    path: str
    host: str = LIVE_HOST
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    expect_status: int = 302
    expect: str = ""  # what the answer means, for people

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}{self.path}"

    def curl(self, port: int, tokens: DemoTokens) -> str:
        """The curl line, with tokens shown as the shell variables `print_guide` exports."""
        flag = "-I" if self.method == "HEAD" else "-si"
        headers = "".join(" -H " + _double_quoted(f"{k}: {v}") for k, v in self.headers.items())
        line = f"curl {flag}{headers} {_double_quoted(self.url(port))}"
        for name, value in tokens.shell_variables().items():
            line = line.replace(value, f"${name}")
        return line


def _double_quoted(text: str) -> str:
    """Shell double quotes, so the $TOKEN variables still expand."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class DemoTokens:
    finance_user: str
    other_user: str
    preview_link: str

    def shell_variables(self) -> dict[str, str]:
        return {"ADA": self.finance_user, "BOB": self.other_user, "PREVIEW": self.preview_link}


def demo_cases(tokens: DemoTokens, sign_in: bool = False) -> list[DemoCase]:
    bearer = {"Authorization": f"Bearer {tokens.finance_user}"}
    login = "302 to /oauth2/start: sign in at the IdP" if sign_in else "302 to the login page with return_to"
    return [
        DemoCase("public file", "/media/5a1b2c/budget.pdf", expect="302 to a presigned S3 URL (add -L to download)"),
        DemoCase("HEAD of a public file", "/media/5a1b2c/budget.pdf", method="HEAD", expect="302 to a URL signed for HEAD"),
        DemoCase("unchanged since last fetch", "/media/5a1b2c/budget.pdf", headers={"If-None-Match": '"5a1b2c-v1"'},
                 expect_status=304, expect="304 Not Modified"),
        DemoCase("old filename", "/media/5a1b2c/budget-draft.pdf", expect="302 to /media/5a1b2c/budget.pdf"),
        DemoCase("unknown filename", "/media/5a1b2c/other.pdf", expect_status=404, expect="404"),
        DemoCase("no such asset", "/media/n0th1n/missing.pdf", expect_status=404, expect="404"),
        DemoCase("deleted", "/media/de1e7e/withdrawn.pdf", expect_status=410, expect="410 Gone"),
        DemoCase("replaced", "/media/0ld123/report-2023.pdf", expect_status=301,
                 expect="301 to /media/n3w456/report-2024.pdf, cacheable 30 min"),
        DemoCase("redirected", "/media/r3d1r3/moved.pdf", expect="302 to https://www.example.org/..."),
        DemoCase("not yet virus-scanned", "/media/5ca9ed/just-uploaded.pdf", expect_status=404, expect="404"),
        DemoCase("draft on the live host", "/media/d7a9f0/draft-plan.pdf",
                 expect="302 to the same path on the draft host"),
        DemoCase("draft, not signed in", "/media/d7a9f0/draft-plan.pdf", host=DRAFT_HOST,
                 expect=login),
        DemoCase("draft, signed in", "/media/d7a9f0/draft-plan.pdf", host=DRAFT_HOST, headers=bearer,
                 expect="302 to S3, Cache-Control: private, no-store"),
        DemoCase("preview link opened", f"/media/p1e4c0/preview-me.pdf?token={tokens.preview_link}", host=DRAFT_HOST,
                 expect="302 without ?token=, sets the preview cookie"),
        DemoCase("preview link, cookie set", "/media/p1e4c0/preview-me.pdf", host=DRAFT_HOST,
                 headers={"Cookie": f"auth_bypass_token={tokens.preview_link}"}, expect="302 to S3"),
        DemoCase("access-limited, anonymous", "/media/a1c3e5/salaries.csv", expect_status=404,
                 expect="404: nobody learns it exists"),
        DemoCase("access-limited, wrong group", "/media/a1c3e5/salaries.csv",
                 headers={"Authorization": f"Bearer {tokens.other_user}"}, expect_status=404, expect="404"),
        DemoCase("access-limited, finance user", "/media/a1c3e5/salaries.csv", headers=bearer,
                 expect="302 to S3, private"),
        DemoCase("legacy Whitehall URL", LEGACY_DEMO_PATH, expect="302 to S3: the object /media/w1a7e1/spring-budget.pdf serves"),
        DemoCase("legacy URL, unchanged", LEGACY_DEMO_PATH, headers={"If-None-Match": '"nfs-123"'},
                 expect_status=304, expect="304: the legacy ETag from the old servers still validates"),
        DemoCase("legacy URL, not yet cleared", LEGACY_DEMO_IMAGE,
                 expect="302 to the image placeholder, cacheable 60 s"),
        DemoCase("forged token", "/media/a1c3e5/salaries.csv",
                 headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEifQ."},
                 expect_status=404, expect="404: alg none is no token"),
    ]  # fmt: skip


@dataclass
class Demo:
    settings: Settings
    store: MemoryAssetStore
    tokens: DemoTokens
    cases: list[DemoCase]
    files: list[DemoFile]

    def idp_client(self) -> dict[str, Any]:
        """The gateway as the development IdP registers it: every host, with back-channel logout."""
        port = self.settings.server.port
        bases = [f"http://{host}:{port}" for host in (DRAFT_HOST, LIVE_HOST)]
        return {
            "client_id": self.settings.oidc.client_id,
            "client_secret": self.settings.oidc.client_secret.reveal(),
            "redirect_uris": [f"{base}/oauth2/callback" for base in bases],
            "post_logout_redirect_uris": [f"{base}/" for base in bases],
            "backchannel_logout_uri": f"{bases[0]}/oauth2/backchannel_logout",
            "backchannel_logout_session_required": True,
        }


def build_demo(
    port: int,
    s3_endpoint: str,
    policies_dir: Path = DEFAULT_POLICIES,
    *,
    admin_port: int = 9090,
    idp_issuer: str = "",
) -> Demo:
    """Settings, keys, records and example requests for a demo served on `port`; with
    `idp_issuer`, browsers sign in there (the development IdP, gateway.dev_idp)."""
    """Settings, keys, records and example requests for a demo served on `port`."""
    private_pem, public_pem = new_rsa_pem_pair()
    user = TokenKey(use="user", alg="RS256", kid="demo-idp", public_key=Secret(public_pem))
    preview = TokenKey(use="preview", alg="HS256", secret=Secret(secrets.token_urlsafe(32)))
    settings = Settings(
        server=ServerSettings(host="127.0.0.1", port=port),
        admin=AdminSettings(host="127.0.0.1", port=admin_port, token=Secret(secrets.token_urlsafe(24))),
        # With their port: redirects name configured hosts only, never a port from the request.
        hosts=HostsSettings(live=(f"{LIVE_HOST}:{port}",), draft=(f"{DRAFT_HOST}:{port}",)),
        state=StateSettings(url=Secret("memory://"), cache_ttl=30, cache_size=10_000),
        s3=S3Settings(bucket=BUCKET, region=REGION, endpoint_url=s3_endpoint, presign_ttl=300),
        tokens=TokensSettings(keys=(user, preview)),
        policies=PoliciesSettings(dir=str(policies_dir)),
        login=LoginSettings(url=LOGIN_URL),
        oidc=OidcSettings(
            issuer=idp_issuer,
            client_id=DEMO_CLIENT_ID,
            client_secret=Secret(secrets.token_urlsafe(24)),
            session_secrets=(Secret(secrets.token_urlsafe(32)),),
        ),
    )
    expires = int(time.time()) + 12 * 3600
    tokens = DemoTokens(
        finance_user=mint_token(user, {"sub": "ada", "org": "hmt", "groups": ["finance"], "exp": expires}, private_pem),
        other_user=mint_token(user, {"sub": "bob", "org": "dfe", "groups": ["comms"], "exp": expires}, private_pem),
        preview_link=mint_token(preview, {"sub": BYPASS_ID, "exp": expires}),
    )  # fmt: skip
    files = demo_files()
    store = MemoryAssetStore([f.record for f in files])
    return Demo(settings, store, tokens, demo_cases(tokens, sign_in=bool(idp_issuer)), files)


def upload_demo_files(s3_endpoint: str, files: list[DemoFile]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    # moto keeps state per process: a second demo in the same process reuses the bucket
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    for demo_file in files:
        if demo_file.body is not None:
            client.put_object(
                Bucket=BUCKET,
                Key=demo_file.record.object_key,
                Body=demo_file.body,
                ContentType=demo_file.record.content_type,
            )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def embedded_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # moto accepts any credentials; these keep the demo away from any real AWS account.
    os.environ["AWS_ACCESS_KEY_ID"] = "demo"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "demo"  # noqa: S105
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def print_guide(demo: Demo, port: int, why_not: str = "") -> None:
    print(
        f"""
asset-gateway demo: http://{LIVE_HOST}:{port} (live) and http://{DRAFT_HOST}:{port} (draft)
  S3 (in-process moto): {demo.settings.s3.endpoint_url}   state: in memory   policy: {demo.settings.policies.dir}
  tokens (valid 12 h): finance user ada, comms user bob, and a preview link for p1e4c0
  *.localhost resolves to 127.0.0.1, so the URLs below work as they are in curl and browsers.
"""
    )
    print("Paste these first (ADA is in group finance, BOB in comms, PREVIEW is a preview link):")
    for name, value in demo.tokens.shell_variables().items():
        print(f"export {name}='{value}'")
    print()
    for number, case in enumerate(demo.cases, 1):
        print(f"{number:2}. {case.title}  →  {case.expect}")
        print(f"    {case.curl(port, demo.tokens)}")
    admin = demo.settings.admin
    print(
        f"\nAdmin API on http://127.0.0.1:{admin.port} (what publishing systems call; writes reach the cache at once):"
    )
    print(f"export ADMIN='{admin.token.reveal()}'")
    for title, line in admin_examples(demo):
        print(f"  {title}\n    {line}")
    print_sign_in(demo, port, why_not)
    print("\nOne JSON access-log line per request follows below. Ctrl-C stops the demo.\n", flush=True)


def print_sign_in(demo: Demo, port: int, why_not: str = "") -> None:
    if not demo.settings.oidc.enabled:
        print(f"\nSign-in is off in this demo: {why_not or 'no identity provider'}.")
        return
    draft, live = f"http://{DRAFT_HOST}:{port}", f"http://{LIVE_HOST}:{port}"
    print(
        f"""
Sign in with a browser (development IdP at {demo.settings.oidc.issuer}: users ada and bob, any password):
  {draft}/media/f0reca/forecast.pdf
      a draft limited to group finance: sign in as ada to read it; as bob the answer is 404
  {live}/oauth2/start?return_to=/media/a1c3e5/salaries.csv
      sign in on the live host, then the access-limited CSV (finance only)
  {draft}/oauth2/sign_out
      signs out here and at the IdP; the forecast asks for a sign-in again"""
    )


def admin_examples(demo: Demo) -> list[tuple[str, str]]:
    """curl lines for the admin API: read the draft, publish it with a PUT of version 2, then see the
    live host serve it at once (the same request gave a redirect to the draft host before)."""
    draft = next(f.record for f in demo.files if f.record.id == "d7a9f0")
    published = json.dumps({**record_to_dict(draft), "version": draft.version + 1, "draft": False})
    base = f"http://127.0.0.1:{demo.settings.admin.port}/assets/{draft.id}"
    auth = '-H "Authorization: Bearer $ADMIN"'
    live = f"http://{LIVE_HOST}:{demo.settings.server.port}/media/{draft.id}/{draft.filename}"
    return [
        ("read the draft's record", f"curl -s {auth} {base}"),
        ("publish it (PUT the whole record, version 2; PATCH takes just the changed fields)",
         f"curl -s -X PUT {auth} -H 'Content-Type: application/json' -d '{published}' {base}"),
        ("the live host now serves it: 302 to S3", f'curl -si "{live}"'),
    ]  # fmt: skip


def run_demo(port: int = 8080, admin_port: int = 9090, log_level: str = "info") -> int:
    configure_logging(log_level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's own request log
    logging.getLogger("botocore").setLevel(logging.WARNING)
    with embedded_s3() as endpoint:
        idp_port = _free_port()
        demo = build_demo(port, endpoint, admin_port=admin_port, idp_issuer=f"http://127.0.0.1:{idp_port}")
        hosts = {DRAFT_HOST: "127.0.0.1", LIVE_HOST: "127.0.0.1"}
        idp, why_not = start_dev_idp(idp_port, [demo.idp_client()], DEMO_USERS, hosts)
        if idp is None:
            demo = build_demo(port, endpoint, admin_port=admin_port)
            print(f"asset-gateway demo: running without sign-in ({why_not})", flush=True)
        upload_demo_files(endpoint, demo.files)
        try:
            return run_async(_serve_demo(demo, port, why_not))
        finally:
            if idp is not None:
                idp.stop()


async def start_demo_app(demo: Demo, port: int) -> web.AppRunner:
    credentials = credentials_from_chain(demo.settings.s3.region)
    gateway = build_gateway(
        demo.settings,
        store=demo.store,
        presigner=Presigner(demo.settings.s3, credentials),
        policy=CurrentPolicy(demo.settings.policies.dir),
    )
    runner = GatewayRunner(create_public_app(gateway))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def start_demo_admin(runner: web.AppRunner) -> web.AppRunner:
    """The admin listener for the gateway `runner` serves (token: the demo settings' admin.token)."""
    admin = GatewayRunner(create_admin_app(runner.app[GATEWAY]), name="admin")
    await admin.setup()
    settings = runner.app[GATEWAY].settings.admin
    await web.TCPSite(admin, settings.host, settings.port).start()
    return admin


async def _serve_demo(demo: Demo, port: int, why_not: str = "") -> int:
    runner = await start_demo_app(demo, port)
    admin = await start_demo_admin(runner)
    print_guide(demo, port, why_not)
    stop = asyncio.Event()
    install_stop_signals(stop)
    await stop.wait()
    await admin.cleanup()
    await runner.cleanup()
    return 0
