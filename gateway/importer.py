"""`asset-gateway asset import FILE.ndjson`: load many records (one DESIGN 2.4 JSON object per line)
straight into the configured store, pipelined, with the same validation and versioned writes as
the admin API; the store announces every applied write to the gateways as usual.

Idempotent: a record already stored at its version is skipped, never rewritten or re-announced.
Resumable: after each batch is committed, FILE.ndjson.progress records the line and byte offset
up to which every line is done; a second run of the same command starts there (idempotency makes
any overlap harmless, the checkpoint only saves the time). Bad lines go to FILE.ndjson.errors as
`line N: field: message`, and make the exit status non-zero."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.models import AssetRecord
from gateway.observability import mask_secrets
from gateway.progress import Progress
from gateway.records import RecordInvalid, record_from_dict
from gateway.state.base import BulkAssetStore, StoreUnavailable, WriteResult

BATCH_SIZE = 500  # records per pipelined round trip
IN_FLIGHT = 4  # batches sent before the oldest must have answered
RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 4.0)  # then the import stops, resumable
CHECKPOINT_EVERY = 0.5  # seconds between checkpoint writes


@dataclass
class ImportSummary:
    written: int = 0  # applied
    skipped: int = 0  # this very record was already stored
    stale: int = 0  # refused: the store holds a newer version, or another record at this version
    failed: int = 0  # bad lines, listed in the errors file
    lines: int = 0  # lines read in this run, blank ones included
    resumed_after: int = 0  # lines an earlier, interrupted run had finished
    last_line: int = 0  # every line up to here is done
    stopped: str = ""  # why the run ended early, if it did
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return self.written + self.skipped + self.stale + self.failed

    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def counts(self) -> str:
        counts = {
            "written": self.written,
            "skipped": self.skipped,
            "stale": self.stale,
            "failed": self.failed,
        }
        return "  ".join(f"{name} {count:,}" for name, count in counts.items())


@dataclass
class _Batch:
    records: list[AssetRecord] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # each record's line
    errors: list[str] = field(default_factory=list)  # "line N: problem" for each bad line
    end_line: int = 0  # the batch covers every line up to and including this one
    end_offset: int = 0


def checkpoint_path(path: Path) -> Path:
    return path.with_name(path.name + ".progress")


def errors_path(path: Path) -> Path:
    return path.with_name(path.name + ".errors")


class Importer:
    def __init__(
        self,
        path: Path,
        store: BulkAssetStore,
        *,
        progress: Progress | None = None,
        stop: asyncio.Event | None = None,
        restart: bool = False,
        batch_size: int = BATCH_SIZE,
        in_flight: int = IN_FLIGHT,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        stream: IO[bytes] | None = None,
        bad_lines: IO[str] | None = None,
    ) -> None:
        """With `stream` (standard input) the lines come from it instead of `path`: nothing is
        checkpointed, and bad lines go to `bad_lines` instead of FILE.errors."""
        self.path = path
        self._stream = stream
        self._bad_lines = bad_lines
        self.store = store
        self.progress = progress
        self.stop = stop if stop is not None else asyncio.Event()
        self.restart = restart
        self.batch_size = batch_size
        self.in_flight = in_flight
        self.retry_delays = retry_delays
        self.summary = ImportSummary()
        self._size = 0 if stream is not None else path.stat().st_size  # 0: unknown, no ETA
        self._identity = (
            {} if stream is not None else {"size": self._size, "mtime_ns": path.stat().st_mtime_ns}
        )
        self._offset = 0
        self._checkpointed_at = 0.0
        self.notice = ""  # one line about the checkpoint, for the caller to show
        self._errors: IO[str] | None = None
        self._start = self._resume_point()  # (line, byte offset) to start after

    async def run(self) -> ImportSummary:
        loop = asyncio.get_running_loop()
        started = loop.time()
        start_line, start_offset = self._start
        self.summary.resumed_after = self.summary.last_line = start_line
        self._offset = start_offset
        mode = "a" if start_line else "w"
        with contextlib.ExitStack() as files:
            if self._stream is not None:
                source: IO[bytes] = self._stream
                self._errors = self._bad_lines
            else:
                source = files.enter_context(self.path.open("rb"))
                self._errors = files.enter_context(errors_path(self.path).open(mode, encoding="utf-8"))
                source.seek(start_offset)
            pending: deque[tuple[asyncio.Task[list[WriteResult | StoreUnavailable]], _Batch]] = deque()
            try:
                for batch in self._batches(source, start_line):
                    task = asyncio.create_task(self.store.put_many(batch.records))
                    pending.append((task, batch))
                    if len(pending) >= self.in_flight:
                        await self._commit(*pending.popleft())
                    if self.stop.is_set():
                        self.summary.stopped = "interrupted"
                        break
                while pending:
                    await self._commit(*pending.popleft())
            except StoreUnavailable as exc:
                self.summary.stopped = f"store unavailable ({mask_secrets(str(exc))})"
                for task, _ in pending:  # their writes may or may not land; the next run redoes them
                    task.cancel()
                await asyncio.gather(*(task for task, _ in pending), return_exceptions=True)
            self.summary.seconds = loop.time() - started
            if self.summary.stopped:
                self._write_checkpoint(force=True)
        if self._stream is None and not self.summary.stopped:
            checkpoint_path(self.path).unlink(missing_ok=True)
            if errors_path(self.path).stat().st_size == 0:  # no bad line in this run or the earlier ones
                errors_path(self.path).unlink()
        self._draw(final=True)
        return self.summary

    def _resume_point(self) -> tuple[int, int]:
        checkpoint = checkpoint_path(self.path)
        if self._stream is not None or self.restart or not checkpoint.exists():
            return 0, 0
        try:
            saved = json.loads(checkpoint.read_text(encoding="utf-8"))
            line, offset = int(saved["line"]), int(saved["offset"])
            same_file = {k: saved.get(k) for k in self._identity} == self._identity
        except (OSError, ValueError, KeyError, TypeError):
            self.notice = f"ignoring unreadable {checkpoint.name}; starting from the first line"
            return 0, 0
        if not same_file:
            self.notice = (
                f"{self.path.name} changed since {checkpoint.name} was written; starting from the first line"
            )
            return 0, 0
        self.notice = f"resuming after line {line:,} ({checkpoint.name})"
        return line, offset

    def _batches(self, source: IO[bytes], line: int) -> Iterator[_Batch]:
        batch = _Batch()
        offset = self._offset
        for raw in source:
            line += 1
            offset += len(raw)
            self.summary.lines += 1
            text = raw.strip()
            if text:
                try:
                    record = record_from_dict(json.loads(text.decode()))
                except (ValueError, RecordInvalid) as exc:  # JSONDecodeError and UnicodeDecodeError too
                    batch.errors.append(f"line {line}: {_problem(exc)}\n")
                else:
                    batch.records.append(record)
                    batch.lines.append(line)
            batch.end_line, batch.end_offset = line, offset
            if len(batch.records) + len(batch.errors) >= self.batch_size:
                yield batch
                batch = _Batch()
        if batch.end_line:
            yield batch

    async def _commit(self, task: asyncio.Task[list[WriteResult | StoreUnavailable]], batch: _Batch) -> None:
        outcomes = await task
        for delay in self.retry_delays:
            retry = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, StoreUnavailable)]
            if not retry or self.stop.is_set():  # asked to stop: do not wait out the retries
                break
            await asyncio.sleep(delay)
            again = await self.store.put_many([batch.records[i] for i in retry])
            for i, outcome in zip(retry, again, strict=True):
                outcomes[i] = outcome
        for line, outcome in zip(batch.lines, outcomes, strict=True):
            if isinstance(outcome, StoreUnavailable):
                raise outcome
            if outcome.applied:
                self.summary.written += 1
            elif outcome.unchanged:
                self.summary.skipped += 1
            elif outcome.legacy_holder is not None:  # a bad line like any other: listed, counted failed
                batch.errors.append(
                    f"line {line}: legacy_url_path: already held by asset {outcome.legacy_holder}\n"
                )
            else:
                self.summary.stale += 1
        if batch.errors:  # written only now, so a resumed run does not list a bad line twice
            self.summary.failed += len(batch.errors)
            if self._errors is not None:
                self._errors.writelines(batch.errors)
        self.summary.last_line = batch.end_line
        self._offset = batch.end_offset
        self._write_checkpoint()
        self._draw()

    def _write_checkpoint(self, *, force: bool = False) -> None:
        if self._stream is not None:
            return  # standard input cannot be read again: nothing to resume from
        now = asyncio.get_running_loop().time()
        if not force and now - self._checkpointed_at < CHECKPOINT_EVERY:
            return
        self._checkpointed_at = now
        checkpoint = checkpoint_path(self.path)
        temporary = checkpoint.with_name(checkpoint.name + ".tmp")
        state: dict[str, Any] = {"line": self.summary.last_line, "offset": self._offset, **self._identity}
        temporary.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temporary, checkpoint)  # atomic: a crash leaves the old checkpoint or the new one

    def _draw(self, *, final: bool = False) -> None:
        if self.progress is None:
            return
        fraction = self._offset / self._size if self._size else None if self._stream is not None else 1.0
        draw = self.progress.finish if final else self.progress.update
        draw(self.summary.records, fraction, self.summary.counts())


def _problem(exc: Exception) -> str:
    if isinstance(exc, RecordInvalid):
        return "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return f"not a JSON object ({exc})"


def summary_text(summary: ImportSummary, path: Path, *, streamed: bool = False) -> str:
    lines = [
        f"{'stdin' if streamed else path.name}: {summary.counts()}",
        f"  {summary.records:,} records in {summary.seconds:.1f}s ({summary.rate():,.0f} records/s)"
        + (f", resumed after line {summary.resumed_after:,}" if summary.resumed_after else ""),
    ]
    if summary.failed:
        lines.append(f"  bad lines are listed {'above' if streamed else f'in {errors_path(path)}'}")
    if summary.stopped and streamed:
        lines.append(
            f"  stopped early: {summary.stopped}; every line up to {summary.last_line:,} is done, and "
            "sending the same lines again is harmless (written records are skipped)"
        )
    elif summary.stopped:
        lines.append(
            f"  stopped early: {summary.stopped}; every line up to {summary.last_line:,} is done, "
            "and running the same command again resumes after it"
        )
    return "\n".join(lines)


def import_exit_status(summary: ImportSummary) -> int:
    return 1 if summary.failed or summary.stopped else 0
