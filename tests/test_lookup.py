"""Replacement chains: each way a chain can end, and that a bad chain never loops; the look-up by
the request's route (an id on /media, a legacy path on /government/uploads/)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.legacy import LEGACY_PREFIX
from gateway.lookup import look_up_route, resolve_replacement
from gateway.models import NO_REPLACEMENT, AccessRequest, AssetRecord, HostKind, ReplacementStatus
from gateway.state.memory import MemoryAssetStore

pytestmark = pytest.mark.asyncio


def record(asset_id: str, replacement_id: str | None = None, **fields: Any) -> AssetRecord:
    return AssetRecord(
        id=asset_id,
        version=1,
        object_key=f"key-{asset_id}",
        filename=f"{asset_id}.pdf",
        replacement_id=replacement_id,
        **fields,
    )


def store_of(*records: AssetRecord) -> MemoryAssetStore:
    return MemoryAssetStore(records)


async def test_no_replacement() -> None:
    store = store_of()
    assert await resolve_replacement(store.get, record("a")) == NO_REPLACEMENT
    assert store.reads == 0


async def test_chain_ending_live() -> None:
    store = store_of(record("b", "c"), record("c"))
    result = await resolve_replacement(store.get, record("a", "b"))
    assert result.status is ReplacementStatus.LIVE
    assert result.final == record("c")


@pytest.mark.parametrize("fields", [{"draft": True}, {"deleted": True}])
async def test_chain_ending_not_live(fields: dict[str, Any]) -> None:
    end = record("b", **fields)
    result = await resolve_replacement(store_of(end).get, record("a", "b"))
    assert result.status is ReplacementStatus.NOT_LIVE
    assert result.final == end


async def test_chain_with_missing_link() -> None:
    result = await resolve_replacement(store_of(record("b", "gone")).get, record("a", "b"))
    assert result.status is ReplacementStatus.MISSING
    assert result.final is None


@pytest.mark.parametrize(
    "chain",
    [
        [record("b", "a")],  # back to the start
        [record("b", "c"), record("c", "b")],  # a loop further down
        [record("b", "b")],  # a link pointing at itself
    ],
)
async def test_cycle_is_broken(chain: list[AssetRecord]) -> None:
    store = store_of(*chain)
    result = await resolve_replacement(store.get, record("a", "b"))
    assert result.status is ReplacementStatus.BROKEN
    assert store.reads <= len(chain) + 1


async def test_self_loop_is_broken_without_a_read() -> None:
    store = store_of(record("a", "a"))
    result = await resolve_replacement(store.get, record("a", "a"))
    assert result.status is ReplacementStatus.BROKEN
    assert store.reads == 0


def linear_chain(hops: int) -> tuple[AssetRecord, MemoryAssetStore]:
    """r0 → r1 → ... → r{hops}, the last one live."""
    records = [record(f"r{i}", f"r{i + 1}") for i in range(hops)] + [record(f"r{hops}")]
    return records[0], store_of(*records[1:])


async def test_chain_of_max_depth_resolves() -> None:
    start, store = linear_chain(10)
    result = await resolve_replacement(store.get, start, max_depth=10)
    assert result.status is ReplacementStatus.LIVE
    assert result.final is not None and result.final.id == "r10"


async def test_chain_longer_than_max_depth_is_broken() -> None:
    start, store = linear_chain(11)
    result = await resolve_replacement(store.get, start, max_depth=10)
    assert result.status is ReplacementStatus.BROKEN
    assert store.reads == 10


def _request(asset_id: str, legacy_path: str | None = None) -> AccessRequest:
    route = "media" if legacy_path is None else "legacy"
    path = legacy_path or f"/media/{asset_id}/f.pdf"
    return AccessRequest(
        "GET", "https", "h", HostKind.LIVE, asset_id, "f.pdf", path, route=route, legacy_path=legacy_path
    )


async def test_the_media_route_looks_up_by_id_and_keeps_the_request() -> None:
    store = store_of(record("a", legacy_url_path=f"{LEGACY_PREFIX}a.pdf", legacy_etag='"old"', etag='"new"'))
    request = _request("a")
    looked_up, found = await look_up_route(store.get, store.get_by_legacy_path, request)
    assert looked_up is request
    assert found.record is not None and found.record.etag == '"new"'


async def test_the_legacy_route_looks_up_by_path_names_the_id_and_uses_the_legacy_validators() -> None:
    path = f"{LEGACY_PREFIX}a.pdf"
    store = store_of(record("a", "b", legacy_url_path=path, legacy_etag='"old"', etag='"new"'), record("b"))
    looked_up, found = await look_up_route(store.get, store.get_by_legacy_path, _request("", path))
    assert looked_up.asset_id == "a" and looked_up.legacy_path == path
    assert found.record is not None and found.record.etag == '"old"'
    assert found.replacement.status is ReplacementStatus.LIVE
    assert found.replacement.final is not None and found.replacement.final.id == "b"


async def test_an_unknown_legacy_path_finds_nothing() -> None:
    store = store_of(record("a"))
    request = _request("", f"{LEGACY_PREFIX}nothing.pdf")
    looked_up, found = await look_up_route(store.get, store.get_by_legacy_path, request)
    assert looked_up is request and found.record is None and found.replacement == NO_REPLACEMENT
