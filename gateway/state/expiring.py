"""A dict whose entries expire a fixed time after they were set, holding at most `maxsize` of them:
the storage of the in-process record cache (gateway.state.cache), kept lean because it may hold
hundreds of thousands of records.

Every entry lives for the same `ttl`, so the order entries are set in is the order they expire in.
Entries set within one slice of `ttl / SLICES` seconds share one expiry time, the earliest of
theirs: an entry may leave up to one slice early, never late. An entry costs one dict slot and two
list slots, where a per-entry deadline and LRU order (cachetools' TTLCache) cost a linked-list
node, a float and a slot in a second, ordered dict. When full, the entries set longest ago (the
nearest to expiring) make room first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

SLICES: Final = 64
_ABSENT: Final = object()


class _Slice:
    """The entries set during one slice, flat as key, value, key, value: an entry is still this
    slice's while the dict maps its key to that very value (it may since have been dropped, or set
    again in a later slice)."""

    __slots__ = ("entries", "expires")

    def __init__(self, expires: float) -> None:
        self.expires = expires
        self.entries: list[Any] = []


class ExpiringDict(Generic[K, V]):
    """`d[key]` raises KeyError for a key never set, dropped or expired; `d[key] = value` sets it
    for `ttl` seconds from now (by `clock`), first making room when `maxsize` entries are held."""

    __slots__ = ("_clock", "_data", "_listed", "_maxsize", "_slices", "_ttl", "_width")

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float]) -> None:
        if maxsize < 1:
            raise ValueError("maxsize: expected 1 or more")
        self._data: dict[K, V] = {}
        self._slices: deque[_Slice] = deque()  # oldest first
        self._maxsize = maxsize
        self._ttl = ttl
        self._width = ttl / SLICES
        self._clock = clock
        self._listed = 0  # entries listed in the slices, dropped ones included

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._data)

    def __getitem__(self, key: K) -> V:
        slices = self._slices
        if slices and slices[0].expires <= self._clock():
            self._expire(self._clock())
        return self._data[key]

    def __setitem__(self, key: K, value: V) -> None:
        now = self._clock()
        self._expire(now)
        data = self._data
        if key not in data:
            while len(data) >= self._maxsize:
                self._evict()
        data[key] = value
        slices = self._slices
        if not slices or now >= slices[-1].expires - self._ttl + self._width:
            slices.append(_Slice(now + self._ttl))
        entries = slices[-1].entries
        entries.append(key)
        entries.append(value)
        self._listed += 1
        if self._listed > 2 * self._maxsize:
            self._compact()

    @property
    def listed(self) -> int:
        """Entries the slices list, dropped ones included: never more than twice `maxsize`."""
        return self._listed

    def discard(self, key: K) -> None:
        """Drop `key` if it is held (its slice still lists it until compacted or expired)."""
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()
        self._slices.clear()
        self._listed = 0

    def _expire(self, now: float) -> None:
        slices, data = self._slices, self._data
        while slices and slices[0].expires <= now:
            entries = slices.popleft().entries
            for n in range(0, len(entries), 2):
                key = entries[n]
                if data.get(key, _ABSENT) is entries[n + 1]:
                    del data[key]
            self._listed -= len(entries) // 2

    def _evict(self) -> None:
        """Drop one held entry of the oldest slice that still holds any."""
        slices, data = self._slices, self._data
        while slices:
            entries = slices[0].entries
            if not entries:
                slices.popleft()
                continue
            value = entries.pop()
            key = entries.pop()
            self._listed -= 1
            if data.get(key, _ABSENT) is value:
                del data[key]
                return

    def _compact(self) -> None:
        """Forget the listed entries no longer held, and all but the newest listing of one held
        twice (the same value dropped and set again), so the slices never list more than twice
        `maxsize` entries; amortised, since at most `maxsize` remain listed after it."""
        data = self._data
        seen: set[object] = set()
        for piece in reversed(self._slices):
            entries = piece.entries
            kept: list[Any] = []
            for n in range(0, len(entries), 2):
                key = entries[n]
                if key not in seen and data.get(key, _ABSENT) is entries[n + 1]:
                    seen.add(key)
                    kept += (key, entries[n + 1])
            piece.entries = kept
        self._slices = deque(piece for piece in self._slices if piece.entries)
        self._listed = len(seen)
