"""`asset-gateway cdn purge` end to end: a config file, a real redis-server, and for `--direct` a
stand-in CDN in a thread recording the PURGE requests."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import redis

from gateway.cdn.queue import PURGE_STREAM
from gateway.cli import main
from tests.servers import free_port


class _Recorder(http.server.BaseHTTPRequestHandler):
    keys: ClassVar[list[str]] = []

    def do_PURGE(self) -> None:
        type(self).keys.append(self.headers.get("Surrogate-Key", ""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def purge_server() -> Iterator[str]:
    _Recorder.keys = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def config(tmp_path: Path, redis_url: str, purge: str = "http", url: str = "http://127.0.0.1:9/") -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[state]\nurl = "{redis_url}"\n[cdn]\npurge = "{purge}"\nurl = "{url}"\n')
    return str(path)


def test_purge_by_hand_queues_hard_purges(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(
        "asset:{a1}",
        mapping={"version": 1, "record": '{"id":"a1","version":1,"object_key":"o","filename":"r.pdf"}'},
    )
    assert main(["cdn", "purge", "--config", config(tmp_path, redis_url), "a1", "b2", "a1"]) == 0
    assert "queued 2 hard purge(s)" in capsys.readouterr().out
    entries = [fields for _, fields in client.xrange(PURGE_STREAM)]
    client.close()
    assert [(f[b"id"], f[b"kind"], f[b"paths"]) for f in entries] == [
        (b"a1", b"hard", b'["/media/a1/r.pdf"]'),
        (b"b2", b"hard", b"[]"),
    ]


def test_purge_direct_sends_through_the_adapter(
    tmp_path: Path, redis_url: str, purge_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["cdn", "purge", "--direct", "--config", config(tmp_path, redis_url, url=purge_server), "c3"])
        == 0
    )
    assert _Recorder.keys == ["asset-c3"]
    assert capsys.readouterr().out == "c3: purged\n"


def test_purge_direct_reports_a_cdn_that_does_not_confirm(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cdn", "purge", "--direct", "--config", config(tmp_path, redis_url), "c3"]) == 1
    assert capsys.readouterr().out == "c3: NOT confirmed by the CDN\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad/id"], "ID: expected asset ids"),
        (["a1"], "cdn.purge: is 'none'"),
    ],
)
def test_purge_refuses_what_it_cannot_do(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    purge = "none" if "none" in message else "http"
    assert main(["cdn", "purge", "--config", config(tmp_path, redis_url, purge=purge), *args]) == 2
    assert message in capsys.readouterr().err
    client = redis.Redis.from_url(redis_url)
    assert client.xlen(PURGE_STREAM) == 0
    client.close()
