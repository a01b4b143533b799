"""The `asset-gateway` command. Each subcommand gathers its inputs, calls library code, and turns
errors into a one-line message and an exit status (1: a check failed, 2: bad usage or config)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gateway.asset_commands import add_commands as add_asset_commands
from gateway.cdn.commands import add_commands as add_cdn_commands
from gateway.observability import mask_secrets, protect_secrets
from gateway.runtime import run_async
from gateway.settings import ConfigError, Settings, describe_settings, load_settings, secret_values

if TYPE_CHECKING:
    from gateway.policy.language import Policy


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"asset-gateway: configuration error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asset-gateway", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
        return sub

    demo = command("demo", _demo, "run the self-contained demo: in-process S3, example files, tokens")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--admin-port", type=int, default=9090)

    serve = with_config(command("serve", _serve, "run the gateway"))
    serve.add_argument("--workers", type=int, help="processes sharing the port (default: server.workers)")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="least severe log lines written (default: server.log_level, info)",
    )

    with_config(
        command("config", _config, "print the effective configuration and where each value came from")
    )

    policy = commands.add_parser("policy", help="check and test policy files").add_subparsers(title="policy")
    for name, run, text in (
        ("check", _policy_check, "validate policy files; problems as file:line: message"),
        ("test", _policy_test, "run the test cases written inside policy files"),
    ):
        sub = policy.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run)
        sub.add_argument("dir", nargs="?", help="policy directory (default: policies.dir from config)")
        sub.add_argument("--config", help=argparse.SUPPRESS)

    explain = with_config(command("explain", _explain, "show the decision for a URL and the rules behind it"))
    explain.add_argument("url", help="e.g. https://assets.example.org/media/5a1b2c/budget.pdf")
    explain.add_argument("--token", action="append", default=[], help="a user or preview token (repeatable)")
    explain.add_argument("--host", help="the Host to assume (default: the URL's host)")

    token = commands.add_parser("token", help="development tokens").add_subparsers(title="token")
    mint = token.add_parser("mint", help="mint a token with a configured HS key")
    mint.set_defaults(run=_token_mint)
    mint.add_argument("--config")
    mint.add_argument("--use", choices=("user", "preview"), default="user")
    mint.add_argument("--sub", required=True)
    mint.add_argument("--org")
    mint.add_argument("--group", action="append", default=[])
    mint.add_argument("--draft-access", action="store_true", help="preview: draft_asset_manager_access")
    mint.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    add_asset_commands(commands, _settings)  # asset get|put|patch|delete|import, reconcile
    add_cdn_commands(commands, _settings)  # cdn purge
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None), os.environ)
    protect_secrets(secret_values(settings))  # masked in every message from here on
    return settings


# ---- commands


def _config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    rows = describe_settings(settings)
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        print(f"{key:<{width}}  {value}  ({source})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    settings = _settings(args)
    if args.log_level:
        settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, log_level=args.log_level)
        )
    workers = args.workers if args.workers is not None else settings.server.workers
    if workers < 1:
        raise ConfigError("--workers: expected at least 1")
    return serve(settings, workers)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(port=args.port, admin_port=args.admin_port)


def _policy_dir(args: argparse.Namespace) -> str:
    return str(args.dir) if args.dir else _settings(args).policies.dir


def _load_policy_reporting(directory: str) -> Policy | None:
    """The policy in `directory`, or None after printing every problem as file:line: message."""
    from gateway.policy.language import PolicyError
    from gateway.policy.loading import load_policy

    try:
        return load_policy(directory)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        errors = sum(1 for p in exc.problems if not p.warning)
        print(f"{errors} error(s) in {directory}", file=sys.stderr)
        return None


def _policy_check(args: argparse.Namespace) -> int:
    from gateway.policy.cases import parse_cases
    from gateway.policy.loading import policy_files

    directory = _policy_dir(args)
    policy = _load_policy_reporting(directory)
    if policy is None:
        return 1
    _, problems = parse_cases(policy)
    for problem in (*policy.warnings, *problems):
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} error(s) in {directory}", file=sys.stderr)
        return 1
    count = len(policy_files(directory))
    print(f"{directory}: {count} file(s), {len(policy.rules)} rules, revision {policy.revision}: ok")
    return 0


def _policy_test(args: argparse.Namespace) -> int:
    from gateway.policy.cases import parse_cases, run_cases

    directory = _policy_dir(args)
    policy = _load_policy_reporting(directory)
    if policy is None:
        return 1
    cases, problems = parse_cases(policy)
    for problem in problems:
        print(problem, file=sys.stderr)
    failed = len(problems)  # a case that cannot run (e.g. it names a missing rule) has failed
    for result in run_cases(policy, cases):
        case = result.case
        if result.passed:
            print(f"PASS {case.name}")
            continue
        failed += 1
        print(f"FAIL {case.name} ({case.file}:{case.line})")
        for key, wanted in case.expect.items():
            got = result.got.get(key)
            marker = "  " if got == wanted else "!!"
            print(f"   {marker} {key}: expected {wanted!r}, got {got!r}")
        print("     rule trace:")
        for step in result.trace:
            print(f"       {'MATCH' if step.matched else 'skip '} {step.rule} ({step.where}): {step.why}")
    total = len(cases) + len(problems)
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed or problems else 0


def _explain(args: argparse.Namespace) -> int:
    """Exit 0 when a decision was explained, 1 when the policy does not load or the store is down."""
    from gateway.explaining import explain_url, format_explanation
    from gateway.policy.language import PolicyError

    settings = _settings(args)
    try:
        report = run_async(explain_url(settings, args.url, tokens=args.token, host=args.host))
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"asset-gateway: the policy in {settings.policies.dir} does not load", file=sys.stderr)
        return 1
    print(format_explanation(report))
    return 1 if report.store_unavailable else 0


def _token_mint(args: argparse.Namespace) -> int:
    from gateway.tokens import mint_token

    settings = _settings(args)
    key = next((k for k in settings.tokens.keys if k.use == args.use and k.secret is not None), None)
    if key is None:
        raise ConfigError(f"tokens.keys: no HS key with use = {args.use!r} to mint with")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": args.sub, "iat": now, "exp": now + args.ttl}
    if settings.tokens.issuer:
        claims["iss"] = settings.tokens.issuer
    if settings.tokens.audience:
        claims["aud"] = settings.tokens.audience
    if args.use == "user":
        if args.org:
            claims["org"] = args.org
        if args.group:
            claims["groups"] = args.group
    elif args.draft_access:
        claims["draft_asset_manager_access"] = True
    print(mint_token(key, claims))
    return 0
