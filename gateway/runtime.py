"""Event-loop plumbing shared by the commands that run servers."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (it is on Linux), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def freeze_start_up_objects() -> None:
    """Leave what start-up built (modules, botocore's service models, the policy: hundreds of
    thousands of objects that live as long as the process) out of every later garbage collection.
    Otherwise each full collection scans them all again, tens of milliseconds in which no request
    is answered. Frozen objects are still freed when their last reference goes (a replaced policy);
    only a reference cycle among them would outlive its use."""
    gc.collect()
    gc.freeze()
