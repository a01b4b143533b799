"""Logs: every line one JSON object of one shape (ts, level, logger, pid, event, then fields); the
access log writes one per request on stderr in a served process (once per event-loop turn), through
logging elsewhere, and nothing at all when the access logger is turned down."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import observability
from gateway.observability import (
    ACCESS_LOGGER,
    USER_AGENT_LIMIT,
    AccessLines,
    access_line,
    client_fields,
    configure_logging,
    encode_fields,
    format_line,
    log_access,
    log_access_with,
    new_request_id,
)

BASE = ["ts", "level", "logger", "pid", "event"]
RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

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


def _fields(line: dict[str, Any]) -> dict[str, Any]:
    assert list(line)[:5] == BASE
    assert RFC3339_MS_UTC.fullmatch(line["ts"])
    assert line["pid"] == os.getpid()
    return {key: value for key, value in line.items() if key not in BASE}


def test_a_served_process_writes_one_json_line_per_request(stderr: io.StringIO) -> None:
    log_access(FIELDS)
    log_access({**FIELDS, "request_id": "def"})
    lines = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert [(line["level"], line["logger"], line["event"]) for line in lines] == [
        ("info", ACCESS_LOGGER, "access")
    ] * 2
    assert [_fields(line) for line in lines] == [FIELDS, {**FIELDS, "request_id": "def"}]


def test_other_lines_share_the_stream_and_the_shape(stderr: io.StringIO) -> None:
    logging.getLogger("gateway.test").warning("hello", extra={"fields": {"asset_id": "a1", "n": 2}})
    log_access(FIELDS)
    first, second = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert (first["level"], first["logger"], first["event"]) == ("warning", "gateway.test", "hello")
    assert _fields(first) == {"asset_id": "a1", "n": 2}  # objects, not JSON inside a string
    assert _fields(second) == FIELDS


def test_a_traceback_is_a_field_of_the_one_line(stderr: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("gateway.test").exception("could not build the response")
    (line,) = stderr.getvalue().splitlines()
    parsed = json.loads(line)
    assert parsed["event"] == "could not build the response"
    assert parsed["level"] == "error"
    assert "RuntimeError: boom" in _fields(parsed)["exception"]


def test_the_level_setting_drops_lines_below_it(stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", stderr)  # pytest's capture swapped it since the fixture ran
    configure_logging("warning")
    logging.getLogger("gateway.test").info("quiet")
    log_access(FIELDS)
    logging.getLogger("gateway.test").error("loud")
    (line,) = stderr.getvalue().splitlines()
    assert json.loads(line)["event"] == "loud"


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level: expected one of debug, info"):
        configure_logging("chatty")


def test_fields_cannot_mask_the_base_keys() -> None:
    line = json.loads(format_line(0.5, "info", "x", 7, "e", {"ts": "forged", "level": "x", "a": 1}))
    assert line == {"ts": "1970-01-01T00:00:00.500Z", "level": "info", "logger": "x", "pid": 7,
                    "event": "e", "a": 1}  # fmt: skip


TRUSTED = ipaddress.ip_network("10.0.0.0/8")


def trusted(address: str) -> bool:
    return ipaddress.ip_address(address) in TRUSTED


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", "", "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer's word is ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.3", "198.51.100.1"),  # the nearest untrusted hop
        ("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.4"),  # only proxies: the farthest one
        ("10.0.0.2", "bogus, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, bogus", "10.0.0.2"),  # garbage stops the walk
        ("10.0.0.2", "2001:DB8::1", "2001:db8::1"),  # written the one way
    ],
)
def test_client_ip_goes_through_trusted_proxies_only(peer: str, forwarded: str, client: str) -> None:
    fields = client_fields(peer, {"X-Forwarded-For": forwarded}, trusted)
    assert fields["client_ip"] == client


def test_user_agent_is_truncated_and_trace_id_comes_from_traceparent() -> None:
    headers = {
        "User-Agent": "x" * 1000,
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    fields = client_fields("127.0.0.1", headers, lambda address: False)
    assert fields["user_agent"] == "x" * USER_AGENT_LIMIT
    assert fields["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_access_line_is_a_format_line() -> None:
    assert access_line(0.5, FIELDS) == format_line(0.5, "info", ACCESS_LOGGER, os.getpid(), "access", FIELDS)
    assert json.loads(access_line(0.5, {})) == json.loads(
        format_line(0.5, "info", ACCESS_LOGGER, os.getpid(), "access", {})
    )


@pytest.mark.parametrize(
    "traceparent",
    ["", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "00-4bf92f35-00f067aa0ba902b7-01"],
)
def test_a_malformed_traceparent_gives_no_trace_id(traceparent: str) -> None:
    assert "trace_id" not in client_fields("127.0.0.1", {"traceparent": traceparent}, lambda address: False)


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
    assert _fields(json.loads(record.getMessage())) == FIELDS


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


def test_a_forked_worker_logs_its_own_pid_and_its_own_request_ids() -> None:
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the worker: report what it would log, then leave at once
        line = json.loads(access_line(0.5, FIELDS))
        os.write(write_end, json.dumps([line["pid"], new_request_id()]).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        pid, child_id = json.loads(reader.read())
    os.waitpid(child, 0)
    assert pid == child != os.getpid()
    assert json.loads(access_line(0.5, FIELDS))["pid"] == os.getpid()
    assert child_id != new_request_id()  # the parent's next id: the same without a reseed


def test_a_line_from_encoded_fields_is_the_line_from_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    shared = {"method": "GET", "path": "/media/a1/caf\u00e9.pdf", "status": 302, "rule": 'quote " and \\'}
    last = {"duration_ms": 0.5, "user_agent": "agent/1"}
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        log_access({"request_id": "rid-1", **shared, **last})
        log_access_with("rid-1", encode_fields(shared), last)
        log_access_with("rid-2", encode_fields(shared), {})
    whole, from_encoded, without_last = [json.loads(r.getMessage()) for r in caplog.records]
    for line in (whole, from_encoded, without_last):
        line.pop("ts")
    assert list(from_encoded.items()) == list(whole.items())  # the same fields, in the same order
    assert without_last == {**{k: v for k, v in whole.items() if k not in last}, "request_id": "rid-2"}
