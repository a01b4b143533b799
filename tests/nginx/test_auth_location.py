"""The shipped auth_request template hands the gateway only the browser headers it reads: every
header the request parser declares, and those the access line reads, must be forwarded by name."""

from __future__ import annotations

import re

from gateway.parsing import RequestParser
from tests.nginx.conftest import NGINX_DIR

# Read by the access line (gateway.observability.client_fields) besides what the parser declares;
# X-Forwarded-For is nginx's own value, set with the other forwarded headers.
LOGGED = ("User-Agent", "traceparent")


def _auth_location() -> str:
    text = (NGINX_DIR / "auth_request.conf.template").read_text()
    match = re.search(r"location = /_asset_auth \{(.*?)\n    \}", text, re.S)
    assert match, "no /_asset_auth location"
    return match.group(1)


def test_the_auth_location_forwards_every_header_the_gateway_reads_and_no_other() -> None:
    location = _auth_location()
    assert re.search(r"^\s*proxy_pass_request_headers off;", location, re.M)
    browser = dict(re.findall(r"^\s*proxy_set_header (\S+) \$http_(\S+);", location, re.M))
    assert browser.pop("Host") == "host"  # the browser's Host, port included
    wanted = [name for name in RequestParser.HEADERS if name != "Host"] + list(LOGGED)
    assert sorted(browser) == sorted(wanted)
    for name, variable in browser.items():
        assert variable == name.lower().replace("-", "_")  # each from the browser's own header
