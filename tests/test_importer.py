"""`asset import` against a real redis-server: many records with progress, a second run that changes
nothing (not even an invalidation), bad lines reported by line number, and a resumable stop."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.cli import main
from gateway.importer import Importer, checkpoint_path, errors_path
from gateway.progress import Progress, format_duration, render
from gateway.state.factory import open_store
from gateway.state.redis import INVALIDATION_CHANNEL
from tests.servers import free_port

RECORDS = 100_000  # the issue asks for 100k: about 5 s a run here


def generate(path: Path, count: int, *, version: int = 1, start: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for n in range(start, start + count):
            record = {"id": f"imp{n:06}", "version": version, "object_key": f"uploads/{n:06}",
                      "filename": f"file-{n}.pdf", "content_type": "application/pdf",
                      "access_limited": {"groups": ["g1"]} if n % 10 == 0 else {}}  # fmt: skip
            out.write(json.dumps(record) + "\n")
    return path


def write_config(path: Path, redis_url: str) -> Path:
    path.write_text(f'[state]\nurl = "{redis_url}"\n')
    return path


def progress_to(buffer: io.StringIO) -> Progress:
    return Progress("import", "records", stream=buffer, interactive=False, every=0.0)


async def test_many_records_then_a_second_run_changes_nothing(redis_url: str, tmp_path: Path) -> None:
    source = generate(tmp_path / "assets.ndjson", RECORDS)
    store = open_store(redis_url)
    shown = io.StringIO()
    first = await Importer(source, store, progress=progress_to(shown)).run()
    assert (first.written, first.skipped, first.stale, first.failed) == (RECORDS, 0, 0, 0)
    assert first.stopped == ""
    lines = shown.getvalue().splitlines()
    assert len(lines) > 5  # progress along the way, not only at the end
    assert "[####" in lines[-1] and "100%" in lines[-1] and "records/s" in lines[-1]
    assert "ETA" in lines[0]
    assert not checkpoint_path(source).exists()
    assert not errors_path(source).exists()
    print(f"\nimport of {RECORDS:,} records: {first.rate():,.0f} records/s")

    raw = redis.Redis.from_url(redis_url)
    assert raw.dbsize() == RECORDS
    sample = {key: raw.hgetall(key) for key in (f"asset:{{imp{n:06}}}" for n in range(0, RECORDS, 97))}
    listener = raw.pubsub()
    listener.subscribe(INVALIDATION_CHANNEL)
    assert listener.get_message(timeout=1)["type"] == "subscribe"

    second = await Importer(source, store, progress=progress_to(io.StringIO())).run()
    assert (second.written, second.skipped, second.stale, second.failed) == (0, RECORDS, 0, 0)
    assert {key: raw.hgetall(key) for key in sample} == sample
    assert listener.get_message(timeout=0.2) is None  # nothing was announced: nothing changed
    listener.close()
    raw.close()
    await store.close()


async def test_newer_and_conflicting_records_count_as_stale(redis_url: str, tmp_path: Path) -> None:
    store = open_store(redis_url)
    await Importer(generate(tmp_path / "v2.ndjson", 10, version=2), store).run()
    summary = await Importer(generate(tmp_path / "v1.ndjson", 20, version=1), store).run()
    assert (summary.written, summary.skipped, summary.stale) == (10, 0, 10)
    await store.close()


async def test_a_stopped_import_resumes_after_the_last_committed_line(redis_url: str, tmp_path: Path) -> None:
    source = generate(tmp_path / "assets.ndjson", 2_000)
    store = open_store(redis_url)
    stop_at_once = Importer(source, store, batch_size=300, in_flight=1)
    stop_at_once.stop.set()  # what SIGINT does: finish what is in flight, save the checkpoint
    first = await stop_at_once.run()
    assert (first.stopped, first.written, first.last_line) == ("interrupted", 300, 300)
    saved = json.loads(checkpoint_path(source).read_text())
    assert saved["line"] == 300
    assert saved["offset"] == len(b"".join(source.read_bytes().splitlines(keepends=True)[:300]))

    resumed = Importer(source, store, batch_size=300)
    assert resumed.notice == f"resuming after line 300 ({source.name}.progress)"
    second = await resumed.run()
    assert (second.resumed_after, second.written, second.skipped, second.stopped) == (300, 1_700, 0, "")
    assert not checkpoint_path(source).exists()
    raw = redis.Redis.from_url(redis_url)
    assert raw.dbsize() == 2_000
    raw.close()

    generate(source, 2_000, version=2)  # a different file under the same name: start over
    checkpoint_path(source).write_text(json.dumps({**saved, "line": 1_000}))
    third = Importer(source, store)
    assert "changed since" in third.notice
    assert (await third.run()).written == 2_000
    await store.close()


async def test_an_unreachable_store_stops_the_import_resumably(tmp_path: Path) -> None:
    source = generate(tmp_path / "assets.ndjson", 50)
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    summary = await Importer(source, store, retry_delays=(0.01,)).run()
    await store.close()
    assert summary.stopped.startswith("store unavailable")
    assert summary.written == 0
    assert json.loads(checkpoint_path(source).read_text())["line"] == 0


def test_bad_lines_go_to_the_errors_file_with_their_numbers(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {"id": "ok1", "version": 1, "object_key": "k1", "filename": "a.pdf"}
    source = tmp_path / "mixed.ndjson"
    source.write_bytes(
        b"\n".join([
            json.dumps(good).encode(),
            b"{this is not json",
            json.dumps({**good, "id": "bad state", "state": "gone"}).encode(),
            b"",
            b"[1, 2]",
            b"\xff\xfe",
            json.dumps({**good, "id": "ok2"}).encode(),
        ]) + b"\n"
    )  # fmt: skip
    config = write_config(tmp_path / "gateway.toml", redis_url)
    assert main(["asset", "import", str(source), "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "written 2  skipped 0  stale 0  failed 4" in out
    assert str(errors_path(source)) in out
    errors = errors_path(source).read_text().splitlines()
    assert [line.split(":")[0] for line in errors] == ["line 2", "line 3", "line 5", "line 6"]
    assert "id: must match" in errors[1] and "state: must be one of" in errors[1]
    assert errors[3] == "line 6: not UTF-8"
    raw = redis.Redis.from_url(redis_url)
    assert raw.exists("asset:{ok1}", "asset:{ok2}") == 2
    raw.close()

    # A second run lists the same bad lines again (the file is rewritten, not appended to).
    assert main(["asset", "import", str(source), "--config", str(config)]) == 1
    assert len(errors_path(source).read_text().splitlines()) == 4
    assert "written 0  skipped 2" in capsys.readouterr().out


async def test_legacy_paths_are_imported_indexed_and_a_taken_one_is_a_listed_bad_line(
    redis_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "whitehall.ndjson"
    lines = [
        {"id": f"wh{n:04}", "version": 1, "object_key": f"uploads/{n}", "filename": f"f{n}.pdf",
         "legacy_url_path": f"/government/uploads/system/uploads/attachment_data/file/{n}/f {n}.pdf"}
        for n in range(1_200)
    ]  # fmt: skip
    lines[700] = {**lines[700], "legacy_url_path": lines[3]["legacy_url_path"]}  # wh0003 holds it
    lines[1_100] = {**lines[1_100], "id": "wh0004", "version": 2,  # moves wh0004 to another path
                    "legacy_url_path": "/government/uploads/moved/f4.pdf"}  # fmt: skip
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = open_store(redis_url)
    # One batch in flight at a time: which of two lines claiming one path comes first is then the
    # file's order (batches in flight together may reach Redis in either order).
    summary = await Importer(source, store, batch_size=250, in_flight=1).run()
    assert (summary.written, summary.failed) == (1_199, 1)
    assert errors_path(source).read_text() == "line 701: legacy_url_path: already held by asset wh0003\n"
    found = await store.get_by_legacy_path(
        "/government/uploads/system/uploads/attachment_data/file/9/f%209.pdf"
    )
    assert found is not None and found.id == "wh0009"
    moved_from = "/government/uploads/system/uploads/attachment_data/file/4/f%204.pdf"
    assert await store.get_by_legacy_path(moved_from) is None
    assert (await store.get_by_legacy_path("/government/uploads/moved/f4.pdf") or found).id == "wh0004"
    again = await Importer(source, store, batch_size=250, in_flight=1).run()
    # wh0004's first line is now older than its stored version: stale, as in any import.
    assert (again.written, again.skipped, again.stale, again.failed) == (0, 1_198, 1, 1)
    await store.close()


def test_import_refuses_the_in_process_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = generate(tmp_path / "a.ndjson", 1)
    config = tmp_path / "gateway.toml"
    config.write_text('[state]\nurl = "memory://"\n')
    assert main(["asset", "import", str(source), "--config", str(config)]) == 2
    assert "memory://" in capsys.readouterr().err


def test_sigint_stops_the_command_cleanly_and_a_rerun_finishes(redis_url: str, tmp_path: Path) -> None:
    """The real command in its own process: Ctrl-C finishes the batches in flight, saves the
    checkpoint and exits 1; the same command again completes the import."""
    source = generate(tmp_path / "big.ndjson", 30_000)
    config = write_config(tmp_path / "gateway.toml", redis_url)
    command = [sys.executable, "-m", "gateway", "asset", "import", str(source), "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not checkpoint_path(source).exists():  # the first batch is committed
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, (out, err)
    assert "stopped early: interrupted" in out
    done = json.loads(checkpoint_path(source).read_text())["line"]
    assert 0 < done < 30_000

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming after line {done:,}" in rerun.stderr
    assert not checkpoint_path(source).exists()
    raw = redis.Redis.from_url(redis_url)
    assert raw.dbsize() == 30_000
    raw.close()


# ---- the progress line


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0:00"), (59.4, "0:59"), (61, "1:01"), (3725, "1:02:05"), (float("inf"), "?")]
)
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_render_with_and_without_a_total() -> None:
    line = render("import a.ndjson", 25_000, "records", 2.0, 0.25, "written 25,000")
    assert line == (
        "import a.ndjson  [######------------------]  25%  25,000 records  12,500 records/s  ETA 0:06"
        "  | written 25,000"
    )
    assert render("listing", 3000, "objects", 1.5) == "listing  3,000 objects  2,000 objects/s  elapsed 0:02"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("x", stream=stream, interactive=True, clock=clock)
    for count in range(1, 6):
        clock.now += 0.06
        progress.update(count)
    progress.finish(5)
    text = stream.getvalue()
    assert text.count("\r") == 3  # at 0.12 s and 0.24 s (every 0.1 s at most), then the final line
    assert text.endswith("\n") and text.count("\n") == 1


def test_progress_in_a_log_prints_a_line_now_and_then(capsys: pytest.CaptureFixture[str]) -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("x", stream=stream, interactive=False, clock=clock)
    for count in range(1, 31):
        clock.now += 1
        progress.update(count)
    progress.finish(30)
    lines: list[Any] = stream.getvalue().splitlines()
    assert len(lines) == 7  # every 5 s of 30, and the final one
    assert "\r" not in stream.getvalue()
