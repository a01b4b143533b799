"""Configuration (DESIGN 2.2): defaults, the TOML file, `GATEWAY_<SECTION>_<KEY>` overrides, secret
references, one ConfigError per bad value naming the key and what was expected, redaction in
`asset-gateway config`, and the command itself run as a process."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import ConfigError, Secret, Settings, describe_settings, load_settings

HS_SECRET = "preview-secret-0123456789-abcdefghijklmnop"  # 42 bytes: long enough for HS256
PEM = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str = "", environ: dict[str, str] | None = None) -> Settings:
    path = write_config(tmp_path, text) if text else None
    return load_settings(str(path) if path else None, environ or {})


def shown(settings: Settings) -> dict[str, tuple[str, str]]:
    return {key: (value, source) for key, value, source in describe_settings(settings)}


# ---- where values come from


def test_defaults_load_without_a_file() -> None:
    settings = load_settings(None, {})
    assert settings.server.port == 8080
    assert settings.server.delivery == "redirect"
    assert settings.server.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"),)
    assert settings.hosts.live == ("assets.example.org",)
    assert settings.state.url.reveal() == "redis://127.0.0.1:6379/0"
    assert settings.tokens.keys == ()
    assert set(settings.sources.values()) == {"default"}
    assert settings.sources["server.port"] == "default"


def test_file_values_name_the_file_as_their_source(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[server]\nport = 8181\ndelivery = "accel"\n\n[s3]\nbucket = "files"\npresign_ttl = 60\n',
    )
    settings = load_settings(str(path), {})
    assert settings.server.port == 8181
    assert settings.server.delivery == "accel"
    assert settings.s3.bucket == "files"
    assert settings.s3.presign_ttl == 60
    assert settings.sources["server.port"] == f"file {path}"
    assert settings.sources["s3.bucket"] == f"file {path}"
    assert settings.sources["server.host"] == "default"


def test_config_path_from_gateway_config_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server]\nport = 8282\n")
    settings = load_settings(None, {"GATEWAY_CONFIG": str(path)})
    assert settings.server.port == 8282
    assert settings.sources["server.port"] == f"file {path}"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    settings = load(tmp_path, "[server]\nport = 8181\n", {"GATEWAY_SERVER_PORT": "9000"})
    assert settings.server.port == 9000
    assert settings.sources["server.port"] == "env GATEWAY_SERVER_PORT"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["a.example.org", "B.Example.org"]', ("a.example.org", "b.example.org")),
        ("a.example.org, B.Example.org", ("a.example.org", "b.example.org")),
        ("a.example.org", ("a.example.org",)),
    ],
    ids=["json", "comma_separated", "single"],
)
def test_lists_from_the_environment(value: str, expected: tuple[str, ...]) -> None:
    settings = load_settings(None, {"GATEWAY_HOSTS_LIVE": value})
    assert settings.hosts.live == expected
    assert settings.sources["hosts.live"] == "env GATEWAY_HOSTS_LIVE"


def test_networks_from_the_environment() -> None:
    settings = load_settings(None, {"GATEWAY_SERVER_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32"})
    assert settings.server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )


# ---- secret references


def test_env_reference_reads_the_named_variable(tmp_path: Path) -> None:
    settings = load(tmp_path, '[admin]\ntoken = "env:ADMIN_SECRET"\n', {"ADMIN_SECRET": "s3cret-admin"})
    assert settings.admin.token.reveal() == "s3cret-admin"


def test_file_reference_reads_the_file_without_its_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "admin-token"
    secret_file.write_text("from-a-file\n", encoding="utf-8")
    settings = load(tmp_path, f'[admin]\ntoken = "file:{secret_file}"\n')
    assert settings.admin.token.reveal() == "from-a-file"


def test_missing_env_reference_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[admin]\ntoken = "env:NOT_SET_ANYWHERE"\n')
    assert str(caught.value).startswith("admin.token: ")
    assert "NOT_SET_ANYWHERE" in str(caught.value)


def test_missing_file_reference_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f'[admin]\ntoken = "file:{tmp_path / "absent"}"\n')
    assert str(caught.value).startswith("admin.token: cannot read ")


# ---- bad values: each names the key and what was expected

KEYS_HS_SHORT = '[[tokens.keys]]\nuse = "preview"\nalg = "HS256"\nsecret = "too-short-secret"\n'
KEYS_PREVIEW_RS = f'[[tokens.keys]]\nuse = "preview"\nalg = "RS256"\npublic_key = """{PEM}"""\n'
KEYS_RS_BOTH = (
    f'[[tokens.keys]]\nuse = "user"\nalg = "RS256"\npublic_key = """{PEM}"""\njwks = \'{{"keys": []}}\'\n'
)


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("", {"GATEWAY_SERVER_PORT": "abc"}, "server.port: expected an integer, got 'abc'"),
        ("[server]\nport = 70000\n", {}, "server.port: expected an integer from 0 to 65535, got 70000"),
        ('[server]\nport = "80"\nworkers = true\n', {}, "server.workers: expected an integer, got True"),
        ('[server]\ndelivery = "teleport"\n', {}, "server.delivery: expected one of redirect, accel"),
        (
            '[server]\ntrusted_proxies = ["not-a-cidr"]\n',
            {},
            "server.trusted_proxies: expected CIDR networks like '10.0.0.0/8', got 'not-a-cidr'",
        ),
        ("[nope]\nx = 1\n", {}, "nope: unknown section"),
        ("[server]\ncolour = 1\n", {}, "server.colour: unknown key"),
        ('server = "x"\n', {}, "server: expected a [server] table"),
        ("", {"GATEWAY_SERVER_COLOUR": "blue"}, "GATEWAY_SERVER_COLOUR: does not name a configuration key"),
        ('[state]\nurl = "ftp://files.example.org/"\n', {}, "state.url: expected a URL with scheme"),
        ('[login]\nurl = "/login"\n', {}, "login.url: expected an absolute http/https URL"),
        (KEYS_HS_SHORT, {}, "tokens.keys[0].secret: expected at least 32 bytes for HS256"),
        (KEYS_PREVIEW_RS, {}, "tokens.keys[0].alg: preview keys are HS256/384/512 shared secrets"),
        (KEYS_RS_BOTH, {}, "tokens.keys[0]: RS256 needs exactly one of public_key, jwks"),
        (
            '[hosts]\nlive = ["a.example.org"]\ndraft = ["A.example.org"]\n',
            {},
            "hosts.draft: 'a.example.org' is also a live host",
        ),
        ("[server\n", {}, "config file "),
        ("", {"GATEWAY_SERVER_LOG_LEVEL": "chatty"}, "server.log_level: expected one of debug, info"),
    ],
    ids=[
        "port_not_a_number",
        "port_out_of_range",
        "workers_bool",
        "delivery_unknown",
        "trusted_proxy_not_cidr",
        "unknown_section",
        "unknown_key",
        "section_not_a_table",
        "unknown_env_variable",
        "state_url_scheme",
        "login_url_relative",
        "hs256_secret_too_short",
        "preview_key_rs256",
        "rs256_public_key_and_jwks",
        "hosts_overlap",
        "toml_syntax",
        "log_level_unknown",
    ],
)
def test_bad_value_names_key_and_expectation(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml, environ)
    assert str(caught.value).startswith(message)


def test_short_secret_error_does_not_show_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, KEYS_HS_SHORT)
    assert "too-short-secret" not in str(caught.value)


def test_state_url_error_does_not_show_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[state]\nurl = "ftp://user:hunter2@files.example.org/"\n')
    assert "hunter2" not in str(caught.value)


# ---- token keys


def test_token_keys_from_toml(tmp_path: Path) -> None:
    pem_file = tmp_path / "idp.pem"
    pem_file.write_text(PEM + "\n", encoding="utf-8")
    text = (
        '[[tokens.keys]]\nuse = "preview"\nalg = "HS256"\nsecret = "env:JWT_AUTH_SECRET"\n\n'
        f'[[tokens.keys]]\nuse = "user"\nalg = "RS256"\nkid = "idp-1"\npublic_key = "file:{pem_file}"\n'
    )
    settings = load(tmp_path, text, {"JWT_AUTH_SECRET": HS_SECRET})
    preview, user = settings.tokens.keys
    assert (preview.use, preview.alg, preview.kid) == ("preview", "HS256", None)
    assert preview.secret is not None and preview.secret.reveal() == HS_SECRET
    assert preview.public_key is None
    assert (user.use, user.alg, user.kid) == ("user", "RS256", "idp-1")
    assert user.public_key is not None and user.public_key.reveal() == PEM
    assert user.secret is None
    assert settings.sources["tokens.keys"].startswith("file ")


def test_token_keys_from_the_environment_as_json() -> None:
    environ = {"GATEWAY_TOKENS_KEYS": f'[{{"use": "user", "alg": "HS512", "secret": "{HS_SECRET * 2}"}}]'}
    (key,) = load_settings(None, environ).tokens.keys
    assert (key.use, key.alg) == ("user", "HS512")


# ---- redaction


def test_describe_redacts_secrets(tmp_path: Path) -> None:
    text = (
        '[admin]\ntoken = "admin-token-hunter2"\n\n'
        '[state]\nurl = "redis://:hunter2@redis.internal:6379/0"\n\n'
        f'[[tokens.keys]]\nuse = "preview"\nalg = "HS256"\nsecret = "{HS_SECRET}"\n'
    )
    rows = shown(load(tmp_path, text))
    assert rows["admin.token"][0] == '"**********"'
    assert rows["state.url"][0] == '"redis://:**********@redis.internal:6379/0"'
    assert '"secret": "**********"' in rows["tokens.keys"][0]
    everything = repr(describe_settings(load(tmp_path, text)))
    for secret in ("hunter2", HS_SECRET):
        assert secret not in everything


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user:hunter2@redis.internal/1", "redis://user:**********@redis.internal/1"),
        (
            "redis+sentinel://:hunter2@s1:26379,s2:26379/mymaster",
            "redis+sentinel://:**********@s1:26379,s2:26379/mymaster",
        ),
        # redis-py also takes the password as a query parameter (the documented unix:// form)
        (
            "unix:///run/redis.sock?db=2&password=hunter2",
            "unix:///run/redis.sock?db=2&password=**********",
        ),
        ("redis://redis.internal/0?password=hunter2", "redis://redis.internal/0?password=**********"),
        ("memory://", "memory://"),
    ],
)
def test_describe_shows_state_url_without_its_password(url: str, expected: str) -> None:
    rows = shown(load_settings(None, {"GATEWAY_STATE_URL": url}))
    assert rows["state.url"] == (f'"{expected}"', "env GATEWAY_STATE_URL")


def test_describe_shows_public_key_and_empty_admin_token(tmp_path: Path) -> None:
    text = f'[[tokens.keys]]\nuse = "user"\nalg = "RS256"\nkid = "idp-1"\npublic_key = """{PEM}"""\n'
    rows = shown(load(tmp_path, text))
    assert '"public_key": "(PEM public key)"' in rows["tokens.keys"][0]
    assert '"kid": "idp-1"' in rows["tokens.keys"][0]
    assert rows["admin.token"] == ('""', "default")


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret} {secret!r}"
    assert repr(Secret("x")) == "Secret('**********')"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")


def test_settings_repr_hides_secrets() -> None:
    settings = load_settings(None, {"GATEWAY_ADMIN_TOKEN": "admin-token-hunter2"})
    assert settings.admin.token.reveal() == "admin-token-hunter2"
    assert "hunter2" not in repr(settings)


# ---- the `config` command, as a process


def run_cli(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_config_command_prints_values_and_sources(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\ndelivery = "accel"\n\n[admin]\ntoken = "env:ADMIN_SECRET"\n')
    result = run_cli(
        "config",
        "--config",
        str(path),
        environ={"GATEWAY_SERVER_PORT": "9000", "ADMIN_SECRET": "admin-token-hunter2"},
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert lines["server.port"].split()[1:] == ["9000", "(env", "GATEWAY_SERVER_PORT)"]
    assert lines["server.delivery"].endswith(f'"accel"  (file {path})')
    assert lines["server.host"].endswith('"127.0.0.1"  (default)')
    assert lines["admin.token"].endswith(f'"**********"  (file {path})')
    assert "hunter2" not in result.stdout
    assert "hunter2" not in result.stderr


def test_config_command_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[server]\nport = "abc"\n')
    result = run_cli("config", "--config", str(path), environ={})
    assert result.returncode == 2
    assert result.stdout == ""
    assert "configuration error: server.port: expected an integer" in result.stderr
    assert "Traceback" not in result.stderr


# ---- Kubernetes service variables and near misses


KUBERNETES_ENV = {
    "GATEWAY_SERVICE_HOST": "10.96.0.12",
    "GATEWAY_SERVICE_PORT": "8080",
    "GATEWAY_SERVICE_PORT_HTTP": "8080",
    "GATEWAY_PORT": "tcp://10.96.0.12:8080",
    "GATEWAY_PORT_8080_TCP": "tcp://10.96.0.12:8080",
    "GATEWAY_PORT_8080_TCP_PROTO": "tcp",
    "GATEWAY_PORT_8080_TCP_PORT": "8080",
    "GATEWAY_PORT_8080_TCP_ADDR": "10.96.0.12",
    "GATEWAY_PORT_9090_UDP": "udp://10.96.0.12:9090",
    "GATEWAY_PORT_9090_SCTP_ADDR": "10.96.0.12",
}


def test_kubernetes_service_variables_are_not_settings() -> None:
    settings = load_settings(None, {**KUBERNETES_ENV, "GATEWAY_SERVER_PORT": "8081"})
    assert settings.server.port == 8081
    assert settings.sources["server.port"] == "env GATEWAY_SERVER_PORT"


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("GATEWAY_SERVER_PORTT", "GATEWAY_SERVER_PORT"),
        ("GATEWAY_SERVR_HOST", "GATEWAY_SERVER_HOST"),
        ("GATEWAY_STATE_CACHE_TL", "GATEWAY_STATE_CACHE_TTL"),
        ("GATEWAY_ADMIN_TOKN", "GATEWAY_ADMIN_TOKEN"),
    ],
)
def test_a_near_miss_stops_start_up_naming_the_key_meant(name: str, meant: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {**KUBERNETES_ENV, name: "1"})
    assert str(caught.value) == f"{name}: does not name a configuration key (did you mean {meant}?)"


@pytest.mark.parametrize("name", ["GATEWAY_PORT_HTTP", "GATEWAY_PORT_8080_HTTP", "GATEWAY_SERVICE_HOSTS"])
def test_only_the_kubernetes_shapes_are_ignored(name: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: does not name a configuration key"):
        load_settings(None, {name: "1"})


def test_serve_starts_under_kubernetes_variables_and_stops_on_a_near_miss(tmp_path: Path) -> None:
    result = run_cli("config", environ={**KUBERNETES_ENV, "GATEWAY_SERVER_PORTT": "80"})
    assert result.returncode == 2
    assert "GATEWAY_SERVER_PORTT" in result.stderr and "did you mean GATEWAY_SERVER_PORT?" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("config", environ=KUBERNETES_ENV)
    assert result.returncode == 0, result.stderr


# ---- connection limits (DESIGN 2.2)


def test_connection_limits_default_and_admin_inherits(tmp_path: Path) -> None:
    from gateway.settings import ListenerLimits, listener_limits

    settings = load(tmp_path)
    assert listener_limits(settings, admin=False) == ListenerLimits(10, 75, 10000, 8192)
    assert listener_limits(settings, admin=True) == ListenerLimits(10, 75, 10000, 8192)
    settings = load(
        tmp_path,
        "[server]\nheader_timeout = 5\nmax_connections = 500\n[admin]\nmax_connections = 20\n",
        {"GATEWAY_ADMIN_KEEPALIVE_TIMEOUT": "2.5"},
    )
    assert listener_limits(settings, admin=False) == ListenerLimits(5, 75, 500, 8192)
    assert listener_limits(settings, admin=True) == ListenerLimits(5, 2.5, 20, 8192)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[server]\nheader_timeout = "soon"\n', "server.header_timeout: expected a number of seconds"),
        ("[server]\nheader_timeout = 0\n", "server.header_timeout: expected a number of seconds from 0.1"),
        ("[admin]\nmax_connections = 0\n", "admin.max_connections: expected an integer from 1"),
        ("[server]\nmax_header_size = 10\n", "server.max_header_size: expected an integer from 1024"),
        ("[admin]\nkeepalive_timeout = -1\n", "admin.keepalive_timeout: expected a number of seconds"),
    ],
)
def test_bad_limits_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml)
    assert str(caught.value).startswith(message)
