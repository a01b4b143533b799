"""The AssetStore protocol every backend implements (reads, versioned writes, and the
announcement of every write to every process), and the errors callers handle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.models import AssetRecord


class StoreUnavailable(RuntimeError):
    """The backing store cannot be reached; callers answer 503 rather than guess."""


class RecordUnreadable(StoreUnavailable):
    """The value stored for one id cannot be read as a record (a hand-made or damaged key).

    A StoreUnavailable, so that id is never served (503) while every other id is unaffected;
    a PUT of the whole record repairs it (the write script treats such a value as absent).
    """


@dataclass(frozen=True, slots=True)
class WriteResult:
    applied: bool  # False: the write's version was not greater than the stored one
    current_version: int  # the version stored after the call
    created: bool = field(default=False, compare=False)  # applied, and there was no record before
    # Not applied because this very record (same version, same fields) is already stored: a
    # repeated write, which callers treat as done rather than as stale.
    unchanged: bool = field(default=False, compare=False)
    # Not applied because another record that is not deleted holds the record's legacy_url_path:
    # that record's id (the admin API answers 409 legacy_path_taken).
    legacy_holder: str | None = field(default=None, compare=False)


class Subscriber(Protocol):
    """The receiving end of a store's write announcements (gateway.state.invalidation)."""

    ping_interval: float  # seconds of silence before a networked store checks its subscription
    clock: Callable[[], float]  # the time the silence is measured with (monotonic seconds)

    def on_subscribed(self, *, in_process: bool) -> None:
        """The subscription is (again) in place. Unless `in_process` (the store is this process's
        own, so nothing can have been missed), announcements may have been lost before it."""
        ...

    def on_announced(self, asset_id: str) -> None:
        """A write to `asset_id` was accepted somewhere. The id is as received: check it."""
        ...

    def on_lost(self, reason: str) -> float:
        """The subscription dropped; returns the seconds to wait before subscribing again."""
        ...


class AssetStore(Protocol):
    async def get(self, asset_id: str) -> AssetRecord | None:
        """The current record, or None. Raises StoreUnavailable."""
        ...

    async def get_by_legacy_path(self, path: str) -> AssetRecord | None:
        """The record whose `legacy_url_path` is `path` (normalised): the live holder, else the
        deleted record that held it last (answered 410), else None. Raises StoreUnavailable."""
        ...

    async def put(
        self, record: AssetRecord, *, base_version: int | None = None, force: bool = False
    ) -> WriteResult:
        """Store the record only if its version is greater than the stored one, atomically, and
        announce its id (and its legacy paths, old and new) to every gateway
        (gateway.state.invalidation). A stored value that cannot be read as a record counts as no
        record, so a PUT repairs it. A legacy_url_path held by another record that is not deleted
        refuses the write (`legacy_holder`), forced or not; a deleted record's path may be taken.

        `base_version`: also require the stored version to be exactly this one (0: no record), so
        a read-modify-write (PATCH) cannot silently drop a write that landed in between. A refusal
        for that reason has `current_version` below the record's version; a stale write has it at
        or above.

        `force`: store it whatever the stored version is (an audited ops repair of a record whose
        version a publisher pushed out of reach); still announced like any write.
        """
        ...

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Tell `subscriber` the id of every write accepted anywhere (announced by `put`), until
        cancelled, re-establishing the subscription whenever it drops. A backend that announces
        nothing returns at once: cached entries then live out their TTL."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot serve."""
        ...

    async def close(self) -> None: ...


class BulkAssetStore(AssetStore, Protocol):
    """What the import and reconcile commands need on top: batched writes, and every record."""

    async def put_many(self, records: Sequence[AssetRecord]) -> list[WriteResult | StoreUnavailable]:
        """`put` for each record, in order, as fast as the backend allows; one outcome per record."""
        ...

    def scan(self, batch_size: int = 1000) -> AsyncIterator[list[AssetRecord]]:
        """Every stored record once, in batches, in no particular order. Raises StoreUnavailable."""
        ...
