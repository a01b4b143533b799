"""`[cdn]` settings (DESIGN 2.9): each adapter's required keys are checked at start, and a bad value
names its key."""

from __future__ import annotations

import pytest

from gateway.settings import ConfigError, describe_settings, load_settings, secret_values


def test_purging_is_off_by_default_and_the_key_header_is_surrogate_key() -> None:
    settings = load_settings(None, {})
    assert settings.cdn.purge == "none"
    assert settings.cdn.key_header == "Surrogate-Key"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GATEWAY_CDN_PURGE": "akamai"}, "cdn.purge: expected one of none, http, fastly, cloudfront"),
        ({"GATEWAY_CDN_PURGE": "http"}, "cdn.url: required when cdn.purge = 'http'"),
        ({"GATEWAY_CDN_PURGE": "http", "GATEWAY_CDN_URL": "varnish:6081"}, "cdn.url: expected an absolute"),
        ({"GATEWAY_CDN_PURGE": "fastly", "GATEWAY_CDN_API_TOKEN": "t"}, "cdn.service_id: required"),
        ({"GATEWAY_CDN_PURGE": "fastly", "GATEWAY_CDN_SERVICE_ID": "SVC"}, "cdn.api_token: required"),
        ({"GATEWAY_CDN_PURGE": "fastly", "GATEWAY_CDN_SERVICE_ID": "../x", "GATEWAY_CDN_API_TOKEN": "t"},
         "cdn.service_id: expected a Fastly service id"),
        ({"GATEWAY_CDN_PURGE": "cloudfront"}, "cdn.distribution_id: required when cdn.purge = 'cloudfront'"),
        ({"GATEWAY_CDN_KEY_HEADER": "Cache Tag"}, "cdn.key_header: expected an HTTP header name"),
    ],
)  # fmt: skip
def test_bad_cdn_settings_stop_the_start_naming_the_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(None, environ)


def test_the_fastly_token_is_a_secret() -> None:
    environ = {"GATEWAY_CDN_PURGE": "fastly", "GATEWAY_CDN_SERVICE_ID": "SVC1",
               "GATEWAY_CDN_API_TOKEN": "env:FASTLY_TOKEN", "FASTLY_TOKEN": "s3cret-fastly"}  # fmt: skip
    settings = load_settings(None, environ)
    assert settings.cdn.api_token.reveal() == "s3cret-fastly"
    shown = dict((key, value) for key, value, _ in describe_settings(settings))
    assert "s3cret" not in shown["cdn.api_token"]
    assert shown["cdn.key_header"] == '"Surrogate-Key"'
    assert "s3cret-fastly" in secret_values(settings)  # masked wherever a message could quote it
