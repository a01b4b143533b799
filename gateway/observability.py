"""Logs: every line one JSON object of the same shape, `ts` (RFC 3339, UTC, milliseconds), `level`,
`logger`, `pid`, `event`, then the event's own fields, so one query language reads them all.

Step six of a request writes its access line here. Tokens never reach a line: the path is logged
without its query, identities appear only as their subject ids, a refused token only as its reason.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import ipaddress
import json
import logging
import os
import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TextIO

ACCESS_LOGGER = "gateway.access"
ACCESS_EVENT = "access"
LEVELS = ("debug", "info", "warning", "error", "critical")
_BASE_KEYS = frozenset(("ts", "level", "logger", "pid", "event"))
USER_AGENT_LIMIT = 200  # characters kept of a User-Agent: enough to tell clients apart
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_access = logging.getLogger(ACCESS_LOGGER)


def new_request_id() -> str:
    """16 hex digits that tell one request's lines apart. Not a secret, so not the OS's generator
    (a system call per request): `random` is seeded from it, and again in every forked worker."""
    return f"{random.getrandbits(64):016x}"


# Built once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
# Access lines are flat (strings, numbers, lists of strings): the check for circular references,
# 40 % of the cost of encoding one, has nothing to find there.
_encode_flat = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode
_encode_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


class _Clock:
    """`ts` text for a Unix time; the part up to the second is rebuilt once a second, not per line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def text(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


_clock = _Clock()


def format_line(now: float, level: str, logger: str, pid: int, event: str, fields: Mapping[str, Any]) -> str:
    """One log line. A field named like a base key is dropped rather than allowed to mask it."""
    head = _encode({"ts": _clock.text(now), "level": level, "logger": logger, "pid": pid, "event": event})
    body = _encode({key: value for key, value in fields.items() if key not in _BASE_KEYS})
    return head if body == "{}" else f"{head[:-1]},{body[1:]}"


def _access_head() -> str:
    return f'"level":"info","logger":"{ACCESS_LOGGER}","pid":{os.getpid()},"event":"{ACCESS_EVENT}"'


_ACCESS_HEAD = _access_head()


def _forked() -> None:
    global _ACCESS_HEAD
    _ACCESS_HEAD = _access_head()


os.register_at_fork(after_in_child=_forked)  # a worker's lines carry its own pid


def access_line(now: float, fields: Mapping[str, Any]) -> str:
    """`format_line` for an access line, built with one encode: it is written for every request.
    The fields are the handler's own, never named like a base key."""
    body = _encode_flat(fields)
    head = f'{{"ts":"{_clock.text(now)}",{_ACCESS_HEAD}'
    return head + "}" if body == "{}" else f"{head},{body[1:]}"


def encode_fields(fields: Mapping[str, Any]) -> str:
    """Access-line fields encoded once for many lines (`log_access_with`): `"a":1,"b":"x"`."""
    return _encode_flat(fields)[1:-1]


def log_access_with(request_id: str, encoded: str, fields: Mapping[str, Any]) -> None:
    """`log_access({"request_id": request_id, **decoded, **fields})` where `encoded` is
    `encode_fields(decoded)`: the same line, without encoding again what many requests share."""
    if _access.isEnabledFor(logging.INFO):
        rest = _encode_flat(fields)
        head = f'{{"ts":"{_clock.text(time.time())}",{_ACCESS_HEAD},"request_id":{_encode_string(request_id)}'
        _emit(f"{head},{encoded}}}" if rest == "{}" else f"{head},{encoded},{rest[1:]}")


def client_fields(
    peer: str | None, headers: Mapping[str, str], is_trusted: Callable[[str], bool]
) -> dict[str, str]:
    """The access line's `client_ip`, `user_agent` and `trace_id` for one request.

    `client_ip` is the peer, or, when the peer is a trusted proxy, the nearest X-Forwarded-For
    address that is not itself a trusted proxy (addresses further left are the client's word only).
    `trace_id` is the trace of a well-formed W3C `traceparent`, so logs join a distributed trace.
    `is_trusted(address)` says whether an address is a trusted proxy (the parser's, remembered)."""
    fields: dict[str, str] = {}
    client = peer or ""
    if client and is_trusted(client):
        forwarded = headers.get("X-Forwarded-For")
        if forwarded:
            for hop in reversed(forwarded.split(",")):
                address = _address(hop.strip())
                if address is None:
                    break  # not an address: nothing left of it can be trusted either
                client = address
                if not is_trusted(address):
                    break
    if client:
        fields["client_ip"] = client
    agent = headers.get("User-Agent")
    if agent:
        fields["user_agent"] = agent[:USER_AGENT_LIMIT]
    parent = headers.get("traceparent")
    if parent:
        match = _TRACEPARENT.fullmatch(parent.strip().lower())
        if match and match.group(1) != "0" * 32:
            fields["trace_id"] = match.group(1)
    return fields


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> str | None:
    """`text` as a normalised IP address, or None; remembered, since the same proxies and clients
    come back request after request and parsing an address is slow."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class AccessLines:
    """How a served process writes access lines: straight to the stream its log handler writes
    to, without a LogRecord and the handler chain (they cost about as much as the rest of the
    request's own code), and once per event-loop turn: the lines of every request answered in a
    turn go out whole and in order in one write, not one system call each. Outside an event loop
    a line is written at once; lines still waiting at exit are written then."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._waiting: list[str] = []

    def add(self, line: str) -> None:
        self._waiting.append(line)
        if len(self._waiting) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        if self._waiting:
            lines, self._waiting = self._waiting, []
            self.stream.write("\n".join(lines) + "\n")


_access_lines: AccessLines | None = None  # set by configure_logging
_secrets: tuple[str, ...] = ()  # set by protect_secrets; masked in every formatted log line


def protect_secrets(values: list[str]) -> None:
    """Mask these strings wherever a log line or an exception's text would carry them: a library's
    error message may quote a URL or a setting we gave it."""
    global _secrets
    _secrets = tuple(sorted({v for v in values if v}, key=len, reverse=True))


def mask_secrets(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "**********")
    return text


def log_access(fields: dict[str, Any]) -> None:
    if _access.isEnabledFor(logging.INFO):
        _emit(access_line(time.time(), fields))


def _emit(line: str) -> None:
    if _access_lines is not None:
        _access_lines.add(line)
        return
    # Elsewhere (tests, embedding) through logging, the finished line as the message;
    # makeRecord + handle is Logger.info without findCaller's walk up the stack.
    record = _access.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, line, (), None)
    _access.handle(record)


def configure_logging(level: str = "info") -> None:
    """Every logger's lines as JSON on stderr, at `level` and above (one of LEVELS)."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level: expected one of {', '.join(LEVELS)}, got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # ours replaces it
    global _access_lines
    if _access_lines is not None:
        _access_lines.flush()
        atexit.unregister(_access_lines.flush)
    _access_lines = AccessLines(handler.stream)
    atexit.register(_access_lines.flush)


class JsonFormatter(logging.Formatter):
    """Any LogRecord as one line of the common shape: the message is the `event`, and
    `extra={"fields": {...}}` supplies the fields. A traceback becomes a field, not more lines."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == ACCESS_LOGGER:
            return record.getMessage()  # already a finished line (see log_access)
        fields = dict(getattr(record, "fields", None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            fields["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        text = format_line(
            record.created, record.levelname.lower(), record.name, record.process or os.getpid(),
            record.getMessage(), fields,
        )  # fmt: skip
        return mask_secrets(text) if _secrets else text
