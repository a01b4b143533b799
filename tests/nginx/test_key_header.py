"""The shipped nginx templates name the CDN key header themselves (nginx cannot add a header whose
name is a variable): every line marked `cdn.key_header` must agree with the gateway's default."""

from __future__ import annotations

import re

import pytest

from gateway.http.auth_request import PREFIX
from gateway.settings import CdnSettings
from tests.nginx.conftest import MODES, NGINX_DIR

MARK = "# cdn.key_header"


def _variable(header: str) -> str:
    """nginx's name for an upstream header: `$upstream_http_` + lower case, `-` as `_`."""
    return "$upstream_http_" + header.lower().replace("-", "_")


def _marked_lines(mode: str) -> list[list[str]]:
    text = (NGINX_DIR / f"{mode}.conf.template").read_text()
    return [line.split("#", 1)[0].split() for line in text.splitlines() if line.rstrip().endswith(MARK)]


@pytest.mark.parametrize("mode", MODES)
def test_template_key_header_lines_match_the_gateway_default(mode: str) -> None:
    header = CdnSettings().key_header
    # auth_request reads what /auth sends (X-Asset-<name>); accel reads the gateway's own header.
    read_from = _variable(PREFIX + header if mode == "auth_request" else header)
    lines = _marked_lines(mode)
    added = [words[1] for words in lines if words[0] == "add_header"]
    read = [words[2].rstrip(";") for words in lines if words[0] in ("auth_request_set", "set")]
    assert added and all(name == header for name in added), added
    assert read == [read_from], read
    # and no unmarked line names the header, so the marks are all an operator has to edit
    text = (NGINX_DIR / f"{mode}.conf.template").read_text()
    naming = re.compile(rf"\b{re.escape(header)}\b")
    named = [line for line in text.splitlines() if naming.search(line.split("#", 1)[0])]
    assert len(named) == len(added), named
