"""The publisher side of the command line: `asset get|put|patch|delete` call the admin API over
HTTP (so they obey exactly what a publishing system gets), `asset import` loads an NDJSON file
straight into the store, and `reconcile` compares the bucket with the store."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from gateway.observability import mask_secrets
from gateway.runtime import run_async
from gateway.settings import ConfigError, Settings
from gateway.state.base import StoreUnavailable

TIMEOUT = 30.0  # seconds for one admin API call


class AdminUnreachable(Exception):
    """The admin listener did not answer at all."""


class InputError(Exception):
    """A file named on the command line cannot be read (not a configuration problem)."""


class AdminClient:
    """The admin API over plain HTTP (urllib: no event loop needed for one call)."""

    def __init__(self, base_url: str, token: str, timeout: float = TIMEOUT) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"--admin-url: expected an http or https URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(
        self, method: str, asset_id: str, body: bytes | None = None, query: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON answer or None)."""
        url = f"{self.base_url}/assets/{quote(asset_id, safe='')}"
        if query:
            url += "?" + urlencode(query)
        request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - scheme checked above
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _decode(error.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminUnreachable(f"cannot reach the admin API at {self.base_url}: {reason}") from None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def admin_url(settings: Settings) -> str:
    """Where this host's gateway listens for admin calls, from admin.host and admin.port."""
    host = settings.admin.host
    if host in ("", "0.0.0.0"):  # noqa: S104 - a listen-anywhere address; we connect to loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.admin.port}"


def explain_failure(status: int, answer: Any, asset_id: str) -> str:
    """A one-look message for a refused call; `answer` is the API's JSON error."""
    answer = answer if isinstance(answer, dict) else {}
    error = answer.get("error", "")
    if status == 401:
        return "the admin API refused the token: check admin.token (or GATEWAY_ADMIN_TOKEN)"
    if status == 404:
        return f"no asset {asset_id}"
    if status == 409 and error == "stale_version":
        return f"refused: the store already holds version {answer.get('current_version')} (stale_version)"
    if status == 409 and error == "record_unreadable":
        return f"the stored value of {asset_id} is not a record: put the whole record to repair it"
    if status == 409 and error == "legacy_path_taken":
        return (
            f"refused: asset {answer.get('asset_id')} already holds that legacy_url_path (legacy_path_taken)"
        )
    if status == 409:
        return f"refused: {error} (current version {answer.get('current_version')}); try again"
    if status == 422:
        details = answer.get("details") or []
        listed = "".join(f"\n  {d.get('field')}: {d.get('message')}" for d in details if isinstance(d, dict))
        return f"invalid record:{listed}"
    return f"the admin API answered {status} {error}".rstrip()


# ---- commands


def add_commands(commands: Any, group: Any, settings_from: Any) -> None:
    """Register `asset ...` and `reconcile` on the CLI's subparsers. `group(name, help)` makes a
    command of subcommands; `settings_from(args)` loads Settings the way every other command does."""

    def with_admin(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
        sub.add_argument("--admin-url", help="the admin API (default: http://admin.host:admin.port)")
        return sub

    def call(args: argparse.Namespace) -> int:
        return _call(args, settings_from(args), args.method)

    asset = group("asset", "read and write asset records")
    text = "print the stored record"
    get = with_admin(asset.add_parser("get", help=text, description=text))
    get.add_argument("id", help="the asset id")
    get.set_defaults(run=call, method="GET")
    for name, text in (
        ("put", "store a full record (JSON from FILE or stdin); its version must be newer"),
        ("patch", "change some fields (JSON from FILE or stdin, with the new version)"),
    ):
        sub = with_admin(asset.add_parser(name, help=text, description=text))
        sub.add_argument("id", help="the asset id")
        sub.add_argument("file", nargs="?", default="-", help="JSON file, or - for stdin (default)")
        sub.set_defaults(run=call, method=name.upper())
        if name == "put":
            sub.add_argument(
                "--force",
                action="store_true",
                help="ops repair: store it whatever the stored version is (audited, announced)",
            )
    text = "mark the record deleted (a new version); the file then answers 410"
    delete = with_admin(asset.add_parser("delete", help=text, description=text))
    delete.add_argument("id", help="the asset id")
    delete.add_argument("--version", type=int, required=True, help="the new version")
    delete.set_defaults(run=call, method="DELETE")

    text = "load records from an NDJSON file (or - for stdin) into the store (idempotent, resumable)"
    load = asset.add_parser("import", help=text, description=text)
    load.add_argument(
        "file", type=Path, help="one JSON record per line; - reads stdin (then nothing is checkpointed)"
    )
    load.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    load.add_argument("--restart", action="store_true", help="ignore FILE.progress and start at line 1")
    load.set_defaults(run=lambda args: _import(args, settings_from(args)))

    text = "list bucket objects with no record and records whose object is missing"
    check = commands.add_parser("reconcile", help=text, description=text)
    check.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    check.add_argument("--prefix", default="", help="only objects (and object keys) under this prefix")
    check.add_argument("--limit", type=int, default=100, help="entries listed per section (0: all)")
    check.add_argument("--json", action="store_true", help="the complete report as JSON on stdout")
    check.set_defaults(run=lambda args: _reconcile(args, settings_from(args)))


def _call(args: argparse.Namespace, settings: Settings, method: str) -> int:
    token = settings.admin.token.reveal()
    if not token:
        raise ConfigError("admin.token: not set (set it in the config file or GATEWAY_ADMIN_TOKEN)")
    client = AdminClient(args.admin_url or admin_url(settings), token)
    body = query = None
    if method in ("PUT", "PATCH"):
        body = sys.stdin.buffer.read() if args.file == "-" else _read(Path(args.file))
    if method == "DELETE":
        query = {"version": str(args.version)}
    if method == "PUT" and args.force:
        query = {"force": "true"}
    try:
        status, answer = client.call(method, args.id, body, query)
    except AdminUnreachable as exc:
        print(f"asset-gateway: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    if status in (200, 201):
        print(json.dumps(answer, indent=2))
        if method != "GET":
            done = "created" if status == 201 else "deleted" if method == "DELETE" else "stored"
            print(f"asset-gateway: {done} {args.id} version {answer.get('version')}", file=sys.stderr)
        return 0
    print(f"asset-gateway: {explain_failure(status, answer, args.id)}", file=sys.stderr)
    return 1


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None


def _shared_store(settings: Settings) -> Any:
    from gateway.state.factory import open_store

    url = settings.state.url.reveal()
    if url.startswith("memory:"):
        raise ConfigError("state.url: memory:// lives inside one gateway process; point it at Redis")
    return open_store(url, purge=settings.cdn.purge != "none")  # import lines purge like API writes


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.importer import Importer, import_exit_status, summary_text
    from gateway.progress import Progress

    path: Path = args.file
    streamed = str(path) == "-"
    if not streamed and not path.is_file():
        raise InputError(f"{path}: no such file")

    async def run() -> int:
        store = _shared_store(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: finish the batches in flight
            loop.add_signal_handler(sig, stop.set)
        importer = Importer(
            path, store, progress=Progress(f"import {'stdin' if streamed else path.name}", "records"),
            stop=stop, restart=args.restart, stream=sys.stdin.buffer if streamed else None,
            bad_lines=sys.stderr,
        )  # fmt: skip
        if importer.notice:
            print(f"asset-gateway: {importer.notice}", file=sys.stderr)
        try:
            summary = await importer.run()
        finally:
            await store.close()
        print(summary_text(summary, path, streamed=streamed))
        return import_exit_status(summary)

    return run_async(run())


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from gateway.progress import Progress
    from gateway.reconcile import format_report, list_bucket, reconcile, report_json, s3_client

    client = s3_client(settings.s3)
    bucket = settings.s3.bucket

    async def run() -> int:
        store = _shared_store(settings)
        try:
            report = await reconcile(
                store,
                lambda: list_bucket(client, bucket, args.prefix),
                bucket=bucket,
                prefix=args.prefix,
                progress=lambda label: Progress(label, "objects" if "bucket" in label else "records"),
            )
        except StoreUnavailable as exc:
            print(f"asset-gateway: {mask_secrets(str(exc))}", file=sys.stderr)
            return 2
        except (BotoCoreError, ClientError) as exc:
            print(f"asset-gateway: listing s3://{bucket}: {mask_secrets(str(exc))}", file=sys.stderr)
            return 2
        finally:
            await store.close()
        print(report_json(report) if args.json else format_report(report, limit=max(args.limit, 0)))
        return 0 if report.clean else 1

    return run_async(run())
