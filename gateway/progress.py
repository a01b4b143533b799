"""Progress of a long command on stderr: one line redrawn in place on a terminal, or a plain line
every few seconds when stderr is a file or a pipe (CI logs, cron mail), with the rate and, when
the total is known, a bar and the time left."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

REDRAW_EVERY = 0.1  # seconds between redraws on a terminal
LINE_EVERY = 5.0  # seconds between lines otherwise
BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


def render(
    label: str, count: int, unit: str, elapsed: float, fraction: float | None = None, detail: str = ""
) -> str:
    """One progress line; a pure function of its inputs. `fraction` (0..1) when the total is known."""
    rate = count / elapsed if elapsed > 0 else 0.0
    parts = [label]
    if fraction is not None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(fraction * BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%")
    parts.append(f"{count:,} {unit}")
    parts.append(f"{rate:,.0f} {unit}/s")
    if fraction is not None:
        remaining = elapsed * (1 - fraction) / fraction if fraction > 0 else math.inf
        parts.append(f"ETA {format_duration(remaining)}")
    else:
        parts.append(f"elapsed {format_duration(elapsed)}")
    line = "  ".join(parts)
    return f"{line}  | {detail}" if detail else line


class Progress:
    """`update()` as often as you like; it draws only when due. `finish()` draws the final line."""

    def __init__(
        self,
        label: str,
        unit: str = "records",
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.every = every if every is not None else (REDRAW_EVERY if self.interactive else LINE_EVERY)
        self.clock = clock
        self.started = clock()
        self._last_drawn = self.started
        self._width = 0  # of the line on screen, so a shorter one can blank it out

    def elapsed(self) -> float:
        return self.clock() - self.started

    def update(self, count: int, fraction: float | None = None, detail: str = "") -> None:
        now = self.clock()
        if now - self._last_drawn >= self.every:
            self._last_drawn = now
            self._draw(render(self.label, count, self.unit, now - self.started, fraction, detail))

    def finish(self, count: int, fraction: float | None = None, detail: str = "") -> None:
        self._draw(render(self.label, count, self.unit, self.elapsed(), fraction, detail))
        if self.interactive:
            self.stream.write("\n")
            self._width = 0
        self.stream.flush()

    def _draw(self, line: str) -> None:
        if self.interactive:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
