"""The `asset-gateway` command as an operator meets it (a real subprocess each time): its help and
version, one-line answers for a busy port and for files that cannot be read, `token mint` with the
README's own configuration, `asset import -`, `policy check FILE`, and `config` refusing what `serve`
would refuse."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import cli
from gateway.settings import load_settings
from gateway.state.factory import open_store
from gateway.tokens import TokenVerifier, new_rsa_pem_pair
from tests.servers import free_port
from tests.test_cli_policy import POLICIES, Run, gateway

ROOT = Path(__file__).resolve().parents[1]
PREVIEW_SECRET = "readme-preview-secret-0123456789abcdef"


def run(*args: str, stdin: str | None = None, **env: str) -> Run:
    """The command with only the environment given here (no GATEWAY_* from the caller)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, env={**environ, **env}, cwd=ROOT, timeout=60, check=False,
        input=stdin,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


# ---- help and version


def test_version() -> None:
    done = run("--version")
    assert done.code == 0
    assert re.fullmatch(r"asset-gateway \d+\.\d+\.\d+\S*\n", done.stdout)


@pytest.mark.parametrize("group", ["policy", "token", "asset", "cdn"])
def test_a_command_group_alone_prints_its_own_help(group: str) -> None:
    done = run(group)
    assert done.code == 2
    assert f"usage: asset-gateway {group}" in done.stderr
    assert "Traceback" not in done.output


def test_the_top_level_help_speaks_to_users() -> None:
    done = run("--help")
    assert done.code == 0
    assert "access-control edge proxy for files in S3" in done.stdout
    assert "asset-gateway demo" in done.stdout


def _parsers(
    parser: argparse.ArgumentParser, path: str = "asset-gateway"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path} {action.dest}"
        for path, parser in _parsers(cli._parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


# ---- starting up


def test_a_busy_port_is_one_line_naming_it_and_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            "serve", GATEWAY_SERVER_PORT=str(port), GATEWAY_ADMIN_PORT=str(free_port()),
            GATEWAY_STATE_URL="memory://", GATEWAY_POLICIES_DIR=str(POLICIES),
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        )  # fmt: skip
    assert done.code == 2
    (line,) = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # not log lines
    assert line.startswith(f"asset-gateway: server.port: 127.0.0.1:{port} is already in use")
    assert "set server.port or GATEWAY_SERVER_PORT to a free port" in line


def test_config_refuses_a_key_whose_algorithm_does_not_fit_its_pem(tmp_path: Path) -> None:
    _, public = new_rsa_pem_pair()
    (tmp_path / "idp.pem").write_text(public)
    keys = json.dumps(
        [{"use": "user", "alg": "ES256", "kid": "k1", "public_key": f"file:{tmp_path / 'idp.pem'}"}]
    )
    for command in (["config"], ["explain", "https://assets.example.org/media/a1/x.pdf"]):
        done = run(*command, GATEWAY_TOKENS_KEYS=keys, GATEWAY_STATE_URL="memory://")
        assert done.code == 2, command
        assert done.stderr == (
            "asset-gateway: configuration error: tokens.keys[0].public_key: "
            "expected a public key usable with ES256\n"
        )


def test_config_lists_the_problems_of_the_policy_serve_would_refuse(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text("rules:\n  - name: broken\n    then: {deny: 999}\n")
    done = run("config", GATEWAY_POLICIES_DIR=str(tmp_path))
    assert done.code == 1
    assert "policies.dir" in done.stdout  # the settings are still shown
    assert re.search(rf"^{re.escape(str(tmp_path / 'default.yaml'))}:3: ", done.stderr, re.MULTILINE)
    good = run("config", GATEWAY_POLICIES_DIR=str(POLICIES))
    assert good.code == 0
    assert re.search(r"policies in .*: \d+ rules, revision [0-9a-f]+: ok", good.stderr)


# ---- token mint with the README's configuration


def readme_config(tmp_path: Path, public_pem: str) -> Path:
    """The TOML block of the README, with its IdP public key file made real."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```toml\n(\[server\].*?)```", text, re.S)
    assert block
    (tmp_path / "idp.pem").write_text(public_pem)
    config = tmp_path / "gateway.toml"
    config.write_text(block.group(1).replace("/etc/gateway/idp.pem", str(tmp_path / "idp.pem")))
    return config


def test_token_mint_works_with_the_readme_config(tmp_path: Path) -> None:
    private, public = new_rsa_pem_pair()
    config = readme_config(tmp_path, public)
    env = {
        "JWT_AUTH_SECRET": PREVIEW_SECRET,
        "GATEWAY_ADMIN_TOKEN": "x",
        "OIDC_CLIENT_SECRET": "client-secret",
        "SESSION_SECRET": "session-secret-0123456789-abcdefghijklmnop",
    }
    settings = load_settings(str(config), env)
    verifier = TokenVerifier(settings.tokens)

    plain = run("token", "mint", "--config", str(config), "--sub", "bypass-1", **env)
    assert plain.code == 0, plain.output
    assert "minted a preview token" in plain.stderr
    assert verifier.verify_preview(plain.stdout.strip(), time.time()) is not None

    user = run("token", "mint", "--config", str(config), "--use", "user", "--sub", "u1", **env)
    assert user.code == 2
    assert "the user keys are RS256" in user.stderr and "--key-file" in user.stderr

    (tmp_path / "idp-private.pem").write_text(private)
    signed = run(
        "token", "mint", "--config", str(config), "--use", "user", "--sub", "u1", "--group", "finance",
        "--key-file", str(tmp_path / "idp-private.pem"), **env,
    )  # fmt: skip
    assert signed.code == 0, signed.output
    identity = verifier.verify_user(signed.stdout.strip(), time.time())
    assert identity is not None and identity.sub == "u1" and identity.groups == {"finance"}


def test_token_mint_es256_and_a_private_key_that_does_not_match(tmp_path: Path) -> None:
    def ec_pair() -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return private, public.decode()

    private, public = ec_pair()
    other, _ = ec_pair()
    (tmp_path / "pub.pem").write_text(public)
    (tmp_path / "priv.pem").write_text(private)
    (tmp_path / "other.pem").write_text(other)
    keys = json.dumps(
        [{"use": "user", "alg": "ES256", "kid": "es-1", "public_key": f"file:{tmp_path / 'pub.pem'}"}]
    )
    good = run(
        "token", "mint", "--sub", "u1", "--key-file", str(tmp_path / "priv.pem"), GATEWAY_TOKENS_KEYS=keys
    )
    assert good.code == 0, good.output
    assert json.loads(_segment(good.stdout.strip(), 0)) == {"alg": "ES256", "kid": "es-1", "typ": "JWT"}
    wrong = run(
        "token", "mint", "--sub", "u1", "--key-file", str(tmp_path / "other.pem"), GATEWAY_TOKENS_KEYS=keys
    )
    assert wrong.code == 1
    assert "the configured keys refuse this token: bad_signature" in wrong.stderr
    missing = run(
        "token", "mint", "--sub", "u1", "--key-file", str(tmp_path / "nope.pem"), GATEWAY_TOKENS_KEYS=keys
    )
    assert missing.code == 2
    assert (
        "configuration error" not in missing.stderr and "nope.pem: cannot read the key file" in missing.stderr
    )


def _segment(token: str, index: int) -> str:
    import base64

    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


# ---- data files


def test_a_missing_data_file_is_not_a_configuration_error(tmp_path: Path) -> None:
    put = run("asset", "put", "a1", str(tmp_path / "none.json"), GATEWAY_ADMIN_TOKEN="t")
    assert put.code == 2
    assert put.stderr == f"asset-gateway: {tmp_path / 'none.json'}: No such file or directory\n"
    load = run("asset", "import", str(tmp_path / "none.ndjson"), GATEWAY_STATE_URL="redis://127.0.0.1:1/0")
    assert load.code == 2
    assert load.stderr == f"asset-gateway: {tmp_path / 'none.ndjson'}: no such file\n"


def test_asset_import_reads_standard_input(redis_url: str, tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "in1", "version": 1, "object_key": "k1", "filename": "a.pdf"}),
        "{not json",
        json.dumps({"id": "in2", "version": 3, "object_key": "k2", "filename": "b.pdf"}),
    ]
    done = run("asset", "import", "-", stdin="\n".join(lines) + "\n", GATEWAY_STATE_URL=redis_url)
    assert done.code == 1  # one bad line
    assert "line 2: not a JSON object" in done.stderr
    assert "stdin: written 2" in done.stdout and "failed 1" in done.stdout
    assert "bad lines are listed above" in done.stdout
    assert list(tmp_path.iterdir()) == [] and not list(ROOT.glob("-*"))  # nothing checkpointed

    async def stored() -> list[int | None]:
        store = open_store(redis_url)
        try:
            records = [await store.get(asset_id) for asset_id in ("in1", "in2")]
        finally:
            await store.close()
        return [None if r is None else r.version for r in records]

    assert asyncio.run(stored()) == [1, 3]
    again = run("asset", "import", "-", stdin=lines[0] + "\n", GATEWAY_STATE_URL=redis_url)
    assert again.code == 0 and "skipped 1" in again.stdout


# ---- policy check


def test_policy_check_checks_one_file() -> None:
    done = gateway("policy", "check", str(POLICIES / "default.yaml"))
    assert done.code == 0, done.output
    assert re.search(r"default\.yaml: 1 file\(s\), \d+ rules, revision [0-9a-f]+: ok", done.stdout)


def test_a_directory_of_yml_files_says_to_rename_them(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text((POLICIES / "default.yaml").read_text())
    done = gateway("policy", "check", str(tmp_path))
    assert done.code == 1
    assert "no *.yaml policy files in this directory (1 *.yml file(s): rename them to .yaml)" in done.stderr
