"""Background tasks: every one is started by `spawn`, which names it, keeps a reference until it ends
(the loop holds only a weak one) and logs how it failed; `stop` cancels it and waits for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def running_tasks() -> list[str]:
    """Names of the background tasks still running (for tests and debugging)."""
    return sorted(t.get_name() for t in _running if not t.done())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("background task %s stopped with an error", task.get_name(), exc_info=error)
    else:
        log.info("background task %s ended", task.get_name())
