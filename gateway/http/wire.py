"""Finished answers as the bytes of an HTTP/1.1 keep-alive response, for the connection layer to
write itself (gateway.http.runner): what aiohttp would write for the same `web.Response` to a GET or
HEAD, serialised once per cached answer (gateway.http.answers) rather than once per request.

aiohttp's rules for the headers it adds are followed exactly (tests/http/test_wire.py compares the
two byte streams): no body, Content-Length or default Content-Type on a 204 or 304; a HEAD answer
has the Content-Length of its body when it has one, and no default Content-Type; otherwise a
non-empty body without a Content-Type is `application/octet-stream`. What changes per request
(Date, X-Request-Id, a recomputed header) is appended by `finish`."""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

_BODYLESS_STATUSES: Final = frozenset((204, 304, *range(100, 200)))
_ADDED_BY_US: Final = frozenset(("content-length", "date", "connection", "transfer-encoding"))


def _line(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
        raise ValueError(f"header {name!r} has a line break")  # aiohttp refuses these too
    return f"{name}: {value}\r\n".encode()


def head(status: int, headers: Iterable[tuple[str, str]], body: bytes | None, method: str) -> bytes:
    """The status line and every header but those `finish` adds: the given ones in order, then
    Content-Type and Content-Length as aiohttp adds them. `method` is GET or HEAD."""
    parts = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
    has_type = False
    for name, value in headers:
        lowered = name.lower()
        if lowered in _ADDED_BY_US:
            raise ValueError(f"header {name!r} is the connection layer's to write")
        has_type = has_type or lowered == "content-type"
        parts.append(_line(name, value))
    length = len(body) if body else 0
    if status not in _BODYLESS_STATUSES:
        if length and not has_type and method != "HEAD":
            parts.append(b"Content-Type: application/octet-stream\r\n")
        if length or method != "HEAD":
            parts.append(b"Content-Length: %d\r\n" % length)
    return b"".join(parts)


def sends_body(status: int, method: str) -> bool:
    """Whether the body follows the head on the wire (never for HEAD, 204 or 304)."""
    return method != "HEAD" and status not in _BODYLESS_STATUSES


_date_second = -1
_date_line = b""


def date_line() -> bytes:
    """`Date: ...\\r\\n` for now, formatted once per second."""
    global _date_second, _date_line
    second = int(time.time())
    if second != _date_second:
        _date_line = b"Date: %s\r\n" % formatdate(second, usegmt=True).encode()
        _date_second = second
    return _date_line


def finish(head_bytes: bytes, *extra: tuple[str, str]) -> bytes:
    """The whole head: `head_bytes`, the per-request headers `extra`, Date, and the blank line."""
    return b"".join((head_bytes, *(_line(name, value) for name, value in extra), date_line(), b"\r\n"))
