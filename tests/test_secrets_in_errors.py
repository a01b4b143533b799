"""No message carries a secret: a malformed state URL of every scheme, with a password in it, stops
`serve` with one line that names `state.url` and masks the password; library messages that quote
the URL are masked too, and so is any log line once the settings are loaded."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from gateway.observability import JsonFormatter, protect_secrets
from gateway.redaction import redact_url, scrub, url_passwords
from gateway.settings import ConfigError, Secret, Settings, StateSettings, load_settings, secret_values
from gateway.state.factory import open_store

PASSWORD = "hunter2-Pa55"  # what must never be shown

MALFORMED = [
    f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
    f"rediss://user:{PASSWORD}@[::1/0",
    f"rediss://{PASSWORD}@127.0.0.1:x/0",
    f"unix:///run/redis.sock?password={PASSWORD}&db=abc",
    f"redis+sentinel://:{PASSWORD}@h1:26379,h2:x/mymaster/0",
    f"redis+sentinel://:{PASSWORD}@h1:26379",
    f"redis+sentinel://u:{PASSWORD}@h1:26379/mymaster/x",
    f"redis+cluster://:{PASSWORD}@h1:abc",
    f"rediss+cluster://u:{PASSWORD}@/",
    f"redis+cluster://u:{PASSWORD.replace('-', '%2D')}@h1:abc",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_open_store_errors_name_the_key_and_mask_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    message = str(caught.value)
    assert message.startswith("state.url: ")
    assert PASSWORD not in message and "hunter2" not in message
    assert "\n" not in message


def run_serve(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_STATE_URL=url, GATEWAY_SERVER_PORT="0", GATEWAY_ADMIN_PORT="0",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("url", MALFORMED)
def test_serve_with_a_malformed_url_stops_with_one_masked_line(url: str) -> None:
    result = run_serve(url)
    assert result.returncode == 2
    assert "hunter2" not in result.stderr and "hunter2" not in result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asset-gateway: configuration error: state.url: ")


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:6379/0",
        f"rediss://user:{PASSWORD}@redis.internal:6380/1",
        f"unix:///run/redis.sock?db=0&password={PASSWORD}",
        f"redis+sentinel://user:{PASSWORD}@s1:26379,s2:26379/mymaster/0",
        f"redis+cluster://:{PASSWORD}@node1:6379,node2:6379",
        f"rediss+cluster://user:{PASSWORD}@node1:6379",
    ],
)
def test_the_config_command_and_redaction_hide_the_password(url: str) -> None:
    assert PASSWORD not in redact_url(url)
    assert PASSWORD in url_passwords(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_STATE_URL"] = url
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "config"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "state.url" in result.stdout


def test_scrub_masks_decoded_and_query_forms() -> None:
    url = "redis://u:p%40ss@h:1/0?password=q1w2"
    masked = scrub("auth p@ss failed; p%40ss; password=q1w2 in redis://u:p%40ss@h", url)
    assert masked == "auth ********** failed; **********; password=********** in redis://u:**********@h"
    assert scrub("saw q1w2", url) == "saw **********"


def test_log_lines_are_masked_once_settings_are_known() -> None:
    settings = Settings(state=StateSettings(url=Secret(f"redis://:{PASSWORD}@r:6379/0")))
    protect_secrets(secret_values(settings))
    try:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger("tests.secrets")
        logger.addHandler(handler)
        try:
            logger.error("connecting to redis://:%s@r:6379/0 failed", PASSWORD)
            try:
                raise ValueError(f"bad url redis://:{PASSWORD}@r")
            except ValueError:
                logger.exception("wrapped")
        finally:
            logger.removeHandler(handler)
        assert PASSWORD not in stream.getvalue()
        assert "**********" in stream.getvalue()
    finally:
        protect_secrets([])


SESSION_ONE = "session-s3cret-one-0123456789abcdef"
SESSION_TWO = "session-s3cret-two-0123456789abcdef"


def test_every_configured_secret_is_masked() -> None:
    settings = load_settings(
        None,
        environ={
            "GATEWAY_ADMIN_TOKEN": "admin-s3cret",
            "GATEWAY_OIDC_ISSUER": "http://127.0.0.1:1",
            "GATEWAY_OIDC_CLIENT_ID": "gateway",
            "GATEWAY_OIDC_CLIENT_SECRET": "client-s3cret",
            "GATEWAY_OIDC_SESSION_SECRETS": f"{SESSION_ONE},{SESSION_TWO}",
        },
    )
    values = secret_values(settings)
    for secret in ("admin-s3cret", "client-s3cret", SESSION_ONE, SESSION_TWO):
        assert secret in values
    assert "" not in values
