"""Event-loop plumbing: the start-up heap left out of later garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.runtime import freeze_start_up_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_start_up_objects_are_left_out_of_later_collections(unfrozen: None) -> None:
    built_at_start_up = [[n] for n in range(1000)]  # lists: always tracked by the collector
    tracked = len(gc.get_objects())
    freeze_start_up_objects()
    assert gc.get_freeze_count() >= len(built_at_start_up)
    assert len(gc.get_objects()) < tracked - len(built_at_start_up)  # no generation holds them now
    assert all(gc.is_tracked(item) for item in built_at_start_up)  # still alive, only not scanned
