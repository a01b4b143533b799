"""The access log: one JSON line per request on stderr in a served process (written once per
event-loop turn), through logging elsewhere, and nothing at all when the access logger is turned
down."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from gateway import observability
from gateway.observability import ACCESS_LOGGER, AccessLines, configure_logging, log_access

FIELDS = {"request_id": "abc", "method": "GET", "path": '/media/a1/"quoted"\n.pdf', "status": 302,
          "duration_ms": 0.25, "subject": None}  # fmt: skip


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging as `serve` runs it, on a stderr of our own; undone afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(observability, "_access_lines", None)
    configure_logging()
    yield stream


def test_a_served_process_writes_one_json_line_per_request(stderr: io.StringIO) -> None:
    log_access(FIELDS)
    log_access({**FIELDS, "request_id": "def"})
    lines = stderr.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [FIELDS, {**FIELDS, "request_id": "def"}]


def test_other_lines_share_the_stream(stderr: io.StringIO) -> None:
    logging.getLogger("gateway.test").warning("hello")
    log_access(FIELDS)
    first, second = stderr.getvalue().splitlines()
    assert json.loads(first) == {"level": "warning", "logger": "gateway.test", "message": "hello"}
    assert json.loads(second) == FIELDS


def test_a_turned_down_access_logger_writes_nothing(stderr: io.StringIO) -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.setLevel(logging.WARNING)
    try:
        log_access(FIELDS)
    finally:
        logger.setLevel(logging.NOTSET)
    assert stderr.getvalue() == ""


def test_without_configure_logging_lines_go_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        log_access(FIELDS)
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert json.loads(record.getMessage()) == FIELDS


class CountedWrites(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_of_one_loop_turn_go_out_together_in_order() -> None:
    stream = CountedWrites()
    lines = AccessLines(stream)
    for n in range(3):
        lines.add(f'{{"n":{n}}}')
    assert stream.writes == 0  # nothing until the loop turns
    await asyncio.sleep(0)
    assert (stream.writes, stream.getvalue()) == (1, '{"n":0}\n{"n":1}\n{"n":2}\n')
    lines.add('{"n":3}')
    await asyncio.sleep(0)
    assert stream.writes == 2


def test_outside_an_event_loop_a_line_is_written_at_once() -> None:
    stream = CountedWrites()
    AccessLines(stream).add('{"n":0}')
    assert (stream.writes, stream.getvalue()) == (1, '{"n":0}\n')
