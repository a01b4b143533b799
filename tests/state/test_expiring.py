"""The cache's storage: entries leave by their TTL (early by at most one slice, never late), the
oldest make room when full, and dropping and setting entries again cannot grow it past its bound."""

from __future__ import annotations

import pytest

from gateway.state.expiring import SLICES, ExpiringDict

TTL = 64.0
SLICE = TTL / SLICES


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def held(store: ExpiringDict[str, object], key: str) -> bool:
    try:
        store[key]
    except KeyError:
        return False
    return True


def test_an_entry_is_held_for_its_ttl_and_not_after(clock: FakeClock) -> None:
    store: ExpiringDict[str, object] = ExpiringDict(10, TTL, clock)
    value = object()
    store["a"] = value
    clock.now += TTL - 0.001
    assert store["a"] is value
    assert len(store) == 1
    clock.now += 0.001
    assert not held(store, "a")
    assert len(store) == 0


def test_entries_of_one_slice_leave_with_its_first_never_later(clock: FakeClock) -> None:
    store: ExpiringDict[str, int] = ExpiringDict(10, TTL, clock)
    store["first"] = 1
    clock.now += SLICE / 2
    store["same_slice"] = 2
    clock.now += SLICE / 2
    store["next_slice"] = 3
    clock.now = 1000.0 + TTL - 0.001
    assert (store["first"], store["same_slice"], store["next_slice"]) == (1, 2, 3)
    clock.now = 1000.0 + TTL
    assert not held(store, "first")
    assert not held(store, "same_slice")  # up to one slice early
    clock.now = 1000.0 + SLICE + TTL - 0.001
    assert store["next_slice"] == 3
    clock.now = 1000.0 + SLICE + TTL
    assert not held(store, "next_slice")


def test_when_full_the_oldest_entries_make_room(clock: FakeClock) -> None:
    store: ExpiringDict[str, int] = ExpiringDict(3, TTL, clock)
    for n in range(5):
        store[f"k{n}"] = n
        clock.now += SLICE
    assert len(store) == 3
    assert [held(store, f"k{n}") for n in range(5)] == [False, False, True, True, True]
    store["k4"] = 40  # setting a held key again makes no room
    assert [held(store, f"k{n}") for n in range(2, 5)] == [True, True, True]
    assert store["k4"] == 40


def test_a_dropped_key_set_again_lives_its_own_ttl(clock: FakeClock) -> None:
    store: ExpiringDict[str, int] = ExpiringDict(10, TTL, clock)
    store["a"] = 1
    store.discard("a")
    assert not held(store, "a")
    clock.now += TTL / 2
    store["a"] = 2
    clock.now = 1000.0 + TTL  # the first value's slice expires: not the second value
    assert store["a"] == 2
    clock.now = 1000.0 + TTL / 2 + TTL
    assert not held(store, "a")
    store.discard("never-set")  # no error


def test_eviction_skips_what_was_dropped(clock: FakeClock) -> None:
    store: ExpiringDict[str, int] = ExpiringDict(2, TTL, clock)
    store["gone"] = 0
    store["a"] = 1
    store.discard("gone")
    store["b"] = 2  # room without evicting: "gone" no longer counts
    assert (store["a"], store["b"]) == (1, 2)
    clock.now += SLICE
    store["c"] = 3
    assert len(store) == 2
    assert store["c"] == 3


def test_dropping_and_setting_again_cannot_grow_it(clock: FakeClock) -> None:
    store: ExpiringDict[str, object] = ExpiringDict(4, TTL, clock)
    same = object()  # like the cache's shared marker for a missing id
    for n in range(1000):
        store["x"] = same
        store["y"] = n
        store.discard("x")
        store.discard("y")
        clock.now += SLICE / 8
        assert store.listed <= 8
    store["x"] = same
    assert store["x"] is same


def test_clear_and_a_size_below_one(clock: FakeClock) -> None:
    store: ExpiringDict[str, int] = ExpiringDict(5, TTL, clock)
    for n in range(5):
        store[str(n)] = n
    store.clear()
    assert len(store) == 0
    assert store.listed == 0
    assert not held(store, "0")
    with pytest.raises(ValueError, match="maxsize"):
        ExpiringDict(0, TTL, clock)
