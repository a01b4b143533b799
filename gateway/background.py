"""Background tasks: every one is started by `spawn`, which names it, keeps a reference until it ends
(the loop holds only a weak one) and logs how it failed; `stop` cancels it and waits for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

_running: set[asyncio.Task[Any]] = set()
_T = TypeVar("_T")


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


def raise_if_cancelled() -> None:
    """Python 3.11's asyncio.wait_for, which redis-py uses to send commands and read replies, can
    swallow a cancellation that arrives just as the awaited call completes (fixed in 3.12); the task
    still counts as cancelling. A loop around such calls checks once a round, or `stop` could wait
    for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("background task %s stopped with an error", task.get_name(), exc_info=error)
    else:
        log.info("background task %s ended", task.get_name())


class SingleFlight(Generic[_T]):
    """One run of `work` at a time: concurrent callers share it, and a caller that is cancelled
    leaves it running for the others (so a flood of requests costs one fetch)."""

    def __init__(self, work: Callable[[], Coroutine[Any, Any, _T]], *, name: str) -> None:
        self._work = work
        self._name = name
        self._task: asyncio.Task[_T] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def run(self) -> _T:
        """Start `work`, or join the run already going; its result or its error."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._work(), name=self._name)
        task = self._task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done() and self._task is task:
                self._task = None
