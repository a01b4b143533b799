"""Keeping secrets out of messages: an error about a Redis URL (ours or a library's) may quote the
URL, or a piece of it, and the password rides in it. Every message built from a secret passes here."""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "**********"
_QUERY_PASSWORD = re.compile(r"([?&][^=&#]*password=)[^&#]*", re.IGNORECASE)


def url_passwords(url: str) -> list[str]:
    """Every form the password of `url` may take in a message: as written and percent-decoded, from
    the userinfo (all of it when it has no `:`) and from each `password=` query value. Read by hand,
    since the URLs that need this most are the ones urllib cannot parse."""
    found: list[str] = []
    _, separator, rest = url.partition("://")
    if separator:
        userinfo, at, _ = rest.rpartition("@")
        if at and userinfo:
            _, colon, password = userinfo.partition(":")
            found.append(password if colon else userinfo)
    for match in re.finditer(r"[?&][^=&#]*password=([^&#]*)", url, re.IGNORECASE):
        found.append(match.group(1))
    found += [unquote(value) for value in found]
    return sorted({value for value in found if value}, key=len, reverse=True)


def scrub(message: str, url: str) -> str:
    """`message` with anything of `url`'s credentials replaced by the mask."""
    for secret in url_passwords(url):
        message = message.replace(secret, MASK)
    return _QUERY_PASSWORD.sub(rf"\1{MASK}", message)


def redact_url(url: str) -> str:
    """`url` fit to show: the userinfo's password and any `password=` query value masked."""
    return scrub(url, url)
