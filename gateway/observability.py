"""Step six: one structured access-log line per request. Tokens never reach it: the path is logged
without its query, and identities appear only as their subject ids."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import sys
from typing import Any, TextIO

ACCESS_LOGGER = "gateway.access"
_access = logging.getLogger(ACCESS_LOGGER)


def new_request_id() -> str:
    return os.urandom(8).hex()


# Built once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


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
        if _access_lines is not None:
            _access_lines.add(_encode(fields))
            return
        # Elsewhere (tests, embedding) through logging; makeRecord + handle is Logger.info
        # without findCaller's walk up the stack.
        record = _access.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, _encode(fields), (), None)
        _access.handle(record)


def configure_logging(level: str = "INFO") -> None:
    """Plain lines on stderr: access lines are already JSON, others get a short prefix."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # ours replaces it
    global _access_lines
    if _access_lines is not None:
        _access_lines.flush()
        atexit.unregister(_access_lines.flush)
    _access_lines = AccessLines(handler.stream)
    atexit.register(_access_lines.flush)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == ACCESS_LOGGER:
            return record.getMessage()
        text = json.dumps(
            {
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            },
            separators=(",", ":"),
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return mask_secrets(text) if _secrets else text
