"""asset-gateway: an access-control edge proxy for files in S3. It answers browsers' requests for
/media/{id}/{filename} with a short-lived S3 link, a redirect or a 404/410, from the file's record
(kept in Redis by your publishing system), the browser's token and the policy files you edit.

Start with `asset-gateway demo`, check a setup with `asset-gateway config` and `policy check`, see
why a URL answers as it does with `asset-gateway explain URL`. Exit status: 0 ok, 1 a check failed,
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.asset_commands import InputError
from gateway.asset_commands import add_commands as add_asset_commands
from gateway.cdn.commands import add_commands as add_cdn_commands
from gateway.observability import LEVELS as LOG_LEVELS
from gateway.observability import mask_secrets, protect_secrets
from gateway.runtime import run_async
from gateway.settings import ConfigError, Settings, describe_settings, load_settings, secret_values
from gateway.version import VERSION

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
    except InputError as exc:
        print(f"asset-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asset-gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"asset-gateway {VERSION}")
    commands = parser.add_subparsers(title="commands")

    def group(name: str, help: str) -> Any:
        """A command made of subcommands (`policy`, `token`, `asset`); alone it prints its own help."""
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=lambda args: _usage(sub))
        return sub.add_subparsers(title=f"{name} commands")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
        return sub

    demo = command("demo", _demo, "run the self-contained demo: in-process S3, example files, tokens")
    demo.add_argument("--port", type=int, default=8080, help="public listener's port (default: 8080)")
    demo.add_argument("--admin-port", type=int, default=9090, help="admin listener's port (default: 9090)")
    demo.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="least severe log lines written"
    )

    serve = with_config(command("serve", _serve, "run the gateway"))
    serve.add_argument("--workers", type=int, help="processes sharing the port (default: server.workers)")
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="least severe log lines written (default: server.log_level, info)",
    )

    with_config(
        command("config", _config, "print the effective configuration and where each value came from")
    )

    policy = group("policy", "check and test policy files")
    for name, run, text in (
        ("check", _policy_check, "validate policy files; problems as file:line: message"),
        ("test", _policy_test, "run the test cases written inside policy files"),
    ):
        sub = policy.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run)
        sub.add_argument(
            "dir",
            nargs="?",
            metavar="DIR_OR_FILE",
            help="a policy directory (its *.yaml files) or one policy file (default: policies.dir)",
        )
        sub.add_argument("--config", help="TOML config file, for policies.dir (default: $GATEWAY_CONFIG)")

    explain = with_config(command("explain", _explain, "show the decision for a URL and the rules behind it"))
    explain.add_argument("url", help="e.g. https://assets.example.org/media/5a1b2c/budget.pdf")
    explain.add_argument("--token", action="append", default=[], help="a user or preview token (repeatable)")
    explain.add_argument("--host", help="the Host to assume (default: the URL's host)")

    token = group("token", "tokens for development and for checking a set-up")
    text = (
        "print a token the configured keys accept: signed with the key's HS secret, or for an RS/ES/PS "
        "user key with the identity provider's private key (--key-file)"
    )
    mint = token.add_parser("mint", help=text, description=text)
    mint.set_defaults(run=_token_mint)
    mint.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    mint.add_argument(
        "--use",
        choices=("user", "preview"),
        help="a user token, or a preview-link token (default: user when a user key can sign, else preview)",
    )
    mint.add_argument("--sub", required=True, help="the subject: a user id, or a preview link's bypass id")
    mint.add_argument("--org", help="user: the organisation claim")
    mint.add_argument("--group", action="append", default=[], help="user: a group (repeatable)")
    mint.add_argument("--draft-access", action="store_true", help="preview: draft_asset_manager_access")
    mint.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default: 3600)")
    mint.add_argument(
        "--key-file",
        type=Path,
        help="PEM private key to sign an RS/ES/PS/EdDSA user token with (its public half must be configured)",
    )
    add_asset_commands(commands, group, _settings)  # asset get|put|patch|delete|import, reconcile
    add_cdn_commands(commands, group, _settings)  # cdn purge
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    """The configuration, checked as `serve` checks it (keys included) whatever the command."""
    from gateway.tokens import check_keys

    settings = load_settings(getattr(args, "config", None), os.environ)
    protect_secrets(secret_values(settings))  # masked in every message from here on
    try:
        check_keys(settings.tokens)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings


# ---- commands


def _config(args: argparse.Namespace) -> int:
    """The settings as `serve` would run with them; exit 1 when the policy it would load is invalid
    (serve refuses to start then), after listing every problem."""
    settings = _settings(args)
    rows = describe_settings(settings)
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        print(f"{key:<{width}}  {value}  ({source})")
    policy = _load_policy_reporting(settings.policies.dir)
    if policy is None:
        return 1
    print(
        f"asset-gateway: policies in {settings.policies.dir}: {len(policy.rules)} rules, "
        f"revision {policy.revision}: ok",
        file=sys.stderr,
    )
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

    return run_demo(port=args.port, admin_port=args.admin_port, log_level=args.log_level)


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
    count = len(policy_files(directory)) if Path(directory).is_dir() else 1
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
    """Exit 0 with the token on stdout; 1 when it was signed but the configured keys refuse it (a
    private key that does not match the configured public one, say), with the reason."""
    from gateway.tokens import Rejection, TokenVerifier, mint_token

    settings = _settings(args)
    private_pem = _read_key_file(args.key_file) if args.key_file else None
    use = args.use or ("user" if _signing_keys(settings, "user", private_pem) else "preview")
    keys = _signing_keys(settings, use, private_pem)
    if not keys:
        raise ConfigError(_no_signing_key(settings, use, private_pem is not None))
    now = int(time.time())
    claims: dict[str, Any] = {"sub": args.sub, "iat": now, "exp": now + args.ttl}
    if use == "user":
        if settings.tokens.issuer:
            claims["iss"] = settings.tokens.issuer
        if settings.tokens.audience:
            claims["aud"] = settings.tokens.audience
        if args.org:
            claims["org"] = args.org
        if args.group:
            claims["groups"] = args.group
    elif args.draft_access:
        claims["draft_asset_manager_access"] = True
    token = ""
    for key in keys:
        try:
            token = mint_token(key, claims, private_pem)
            break
        except ValueError:
            continue  # a private key of another type than this key's algorithm: try the next key
    if not token:
        raise InputError(f"{args.key_file}: the private key fits none of the configured {use} keys")
    if args.use is None:
        print(f"asset-gateway: minted a {use} token (choose with --use)", file=sys.stderr)
    print(token)
    checked = TokenVerifier(settings.tokens).check(use, token, now)
    if isinstance(checked, Rejection):
        print(f"asset-gateway: the configured keys refuse this token: {checked.reason}", file=sys.stderr)
        return 1
    return 0


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: cannot read the key file ({getattr(exc, 'strerror', None) or exc})"
        ) from None


def _signing_keys(settings: Settings, use: str, private_pem: str | None) -> list[Any]:
    """The configured keys of `use` that could sign: HS keys by their secret, the others only with a
    private key file."""
    return [
        key
        for key in settings.tokens.keys
        if key.use == use
        and (key.secret is not None if key.alg.startswith("HS") else private_pem is not None)
    ]


def _no_signing_key(settings: Settings, use: str, have_key_file: bool) -> str:
    algs = sorted({key.alg for key in settings.tokens.keys if key.use == use})
    if not algs:
        return f"tokens.keys: no key with use = {use!r} is configured"
    if have_key_file:
        return f"tokens.keys: the {use} keys are {', '.join(algs)}: none signs with a private key file"
    return (
        f"tokens.keys: the {use} keys are {', '.join(algs)}, verified with a public key: pass the "
        f"matching private key with --key-file to mint a {use} token"
    )
