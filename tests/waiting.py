"""Waiting for something to become true, with a deadline: the tests' only way to wait, so a slow
machine makes a test slower, never wrong, and a broken feature fails with a message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T] | T], *, within: float = 5.0, what: str = "") -> T:
    """Call `check` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {within}s: {what or check}")
        await asyncio.sleep(0.005)
