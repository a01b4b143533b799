"""Step six: one structured access-log line per request. Tokens never reach it: the path is logged
without its query, and identities appear only as their subject ids."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

ACCESS_LOGGER = "gateway.access"
_access = logging.getLogger(ACCESS_LOGGER)


def new_request_id() -> str:
    return os.urandom(8).hex()


def log_access(fields: dict[str, Any]) -> None:
    if _access.isEnabledFor(logging.INFO):
        _access.info(json.dumps(fields, separators=(",", ":"), default=str))


def configure_logging(level: str = "INFO") -> None:
    """Plain lines on stderr: access lines are already JSON, others get a short prefix."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # ours replaces it


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
