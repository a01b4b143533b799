"""Step six: one structured access-log line per request. Tokens never reach it: the path is logged
without its query, and identities appear only as their subject ids."""

from __future__ import annotations

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


# Where a served process writes access lines (set by configure_logging): straight to the stream
# its log handler writes to, one whole line per write. A LogRecord and the handler chain cost
# about as much as the rest of the request's own code; the level check below still applies.
_access_stream: TextIO | None = None


def log_access(fields: dict[str, Any]) -> None:
    if _access.isEnabledFor(logging.INFO):
        if _access_stream is not None:
            _access_stream.write(_encode(fields) + "\n")
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
    global _access_stream
    _access_stream = handler.stream


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
        return text
