"""The purge queue: the Redis stream `asset-gateway:purge` with one consumer group that every
gateway reads, so each purge is handed to exactly one of them and stays pending, under that
gateway's name, until it is acknowledged; another gateway claims it when it stays pending too long
(its reader died). Acknowledged entries are deleted, so the stream's length is the backlog and its
first entry the oldest purge not yet confirmed. `memory://` stores use the in-process equivalent.

Entries carry ids, keys and paths, never a record; the entry id's time is the write's time."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from redis.exceptions import ResponseError

from gateway.cdn.plan import Purge, PurgeKind

log = logging.getLogger(__name__)

PURGE_STREAM: Final = "asset-gateway:purge"
PURGE_GROUP: Final = "asset-gateway"


@dataclass(frozen=True, slots=True)
class QueuedPurge:
    entry_id: str
    purge: Purge
    enqueued_at: float  # seconds since the epoch: when the write that asked for it was applied


def entry_fields(purge: Purge) -> dict[str, str]:
    """A purge as stream entry fields (the Lua write script builds the same four)."""
    return {
        "id": purge.asset_id,
        "kind": purge.kind.value,
        "keys": " ".join(purge.keys),
        "paths": json.dumps(list(purge.paths), separators=(",", ":")),
    }


def purge_from_fields(fields: Mapping[str, str]) -> Purge:
    """Raises ValueError (or KeyError) on an entry that is not one of ours."""
    paths = json.loads(fields.get("paths") or "[]")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ValueError("paths is not a list of strings")
    keys = tuple(fields["keys"].split())
    if not fields["id"] or not keys:
        raise ValueError("no asset id or keys")
    return Purge(fields["id"], PurgeKind(fields["kind"]), keys, tuple(paths))


def entry_time(entry_id: str) -> float:
    """Stream ids are `<milliseconds>-<sequence>`."""
    return int(entry_id.partition("-")[0]) / 1000


class PurgeQueue(Protocol):
    async def prepare(self) -> None:
        """Create the consumer group if it is missing (at start, and after Redis lost it)."""
        ...

    async def add(self, purges: Sequence[Purge]) -> None: ...

    async def read(self, consumer: str, count: int, block: float) -> list[QueuedPurge]:
        """New entries for `consumer`, waiting up to `block` seconds for one to arrive."""
        ...

    async def claim(self, consumer: str, min_idle: float, count: int) -> list[QueuedPurge]:
        """Entries pending for longer than `min_idle` seconds under any consumer, now `consumer`'s."""
        ...

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Show `consumer` is still working on these (a retry is not a death)."""
        ...

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """The CDN confirmed: acknowledge and delete."""
        ...

    async def backlog(self) -> tuple[int, float | None]:
        """Entries not yet confirmed, and the enqueue time of the oldest (None when empty)."""
        ...


class RedisPurgeQueue:
    """The stream on a Redis client (single node, Sentinel master or Cluster)."""

    def __init__(self, client: Any, *, stream: str = PURGE_STREAM, group: str = PURGE_GROUP) -> None:
        self._client = client
        self.stream = stream
        self.group = group

    async def prepare(self) -> None:
        try:
            await self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def add(self, purges: Sequence[Purge]) -> None:
        for purge in purges:
            await self._client.xadd(self.stream, entry_fields(purge))

    async def read(self, consumer: str, count: int, block: float) -> list[QueuedPurge]:
        reply = await self._client.xreadgroup(
            self.group, consumer, {self.stream: ">"}, count=count, block=max(1, int(block * 1000))
        )
        entries: list[tuple[Any, Any]] = []
        for _stream, items in reply or ():
            entries.extend(items)
        return await self._decode(entries)

    async def claim(self, consumer: str, min_idle: float, count: int) -> list[QueuedPurge]:
        reply = await self._client.xautoclaim(
            self.stream, self.group, consumer, min_idle_time=int(min_idle * 1000), start_id="0-0", count=count
        )
        entries = [item for item in reply[1] if item and item[1] is not None]
        return await self._decode(entries)

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._client.xclaim(
                self.stream, self.group, consumer, min_idle_time=0, message_ids=list(entry_ids), justid=True
            )

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            pipe = self._client.pipeline(transaction=False)
            pipe.xack(self.stream, self.group, *entry_ids)
            pipe.xdel(self.stream, *entry_ids)
            await pipe.execute()

    async def backlog(self) -> tuple[int, float | None]:
        pipe = self._client.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xrange(self.stream, count=1)
        length, first = await pipe.execute()
        return int(length), entry_time(_text(first[0][0])) if first else None

    async def _decode(self, entries: Sequence[tuple[Any, Any]]) -> list[QueuedPurge]:
        queued, unreadable = [], []
        for raw_id, raw_fields in entries:
            entry_id = _text(raw_id)
            try:
                fields = {_text(k): _text(v) for k, v in raw_fields.items()}
                queued.append(QueuedPurge(entry_id, purge_from_fields(fields), entry_time(entry_id)))
            except (ValueError, KeyError) as exc:
                log.warning("dropping unreadable purge entry %s: %s", entry_id, exc)
                unreadable.append(entry_id)
        await self.ack(unreadable)  # retrying cannot make them readable
        return queued


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class _Entry:
    purge: Purge
    enqueued_at: float
    owner: str | None = None
    delivered_at: float = 0.0


class MemoryPurgeQueue:
    """The same rules in one process (memory:// stores): entries stay until acknowledged."""

    def __init__(self, clock: Any = time.time) -> None:
        self._entries: dict[str, _Entry] = {}
        self._sequence = 0
        self._arrived = asyncio.Event()
        self._clock = clock

    async def prepare(self) -> None:
        return None

    def add_now(self, purges: Sequence[Purge]) -> None:
        """Synchronous, for the memory store's write (which must not await)."""
        for purge in purges:
            self._sequence += 1
            now = self._clock()
            self._entries[f"{int(now * 1000)}-{self._sequence}"] = _Entry(purge, now)
        if purges:
            self._arrived.set()

    async def add(self, purges: Sequence[Purge]) -> None:
        self.add_now(purges)

    async def read(self, consumer: str, count: int, block: float) -> list[QueuedPurge]:
        fresh = self._take(consumer, count, lambda e: e.owner is None)
        if not fresh:
            self._arrived.clear()
            try:
                async with asyncio.timeout(block):
                    await self._arrived.wait()
            except TimeoutError:
                return []
            fresh = self._take(consumer, count, lambda e: e.owner is None)
        return fresh

    async def claim(self, consumer: str, min_idle: float, count: int) -> list[QueuedPurge]:
        now = self._clock()
        return self._take(consumer, count, lambda e: e.owner is not None and now - e.delivered_at >= min_idle)

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            entry = self._entries.get(entry_id)
            if entry is not None:
                entry.owner, entry.delivered_at = consumer, self._clock()

    async def ack(self, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            self._entries.pop(entry_id, None)

    async def backlog(self) -> tuple[int, float | None]:
        oldest = min((e.enqueued_at for e in self._entries.values()), default=None)
        return len(self._entries), oldest

    def _take(self, consumer: str, count: int, wanted: Any) -> list[QueuedPurge]:
        taken: list[QueuedPurge] = []
        for entry_id, entry in self._entries.items():
            if len(taken) >= count:
                break
            if wanted(entry):
                entry.owner, entry.delivered_at = consumer, self._clock()
                taken.append(QueuedPurge(entry_id, entry.purge, entry.enqueued_at))
        return taken
