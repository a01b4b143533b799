"""The purge queue and worker on a real redis-server, sending through the http adapter to a
recording stand-in CDN: acknowledged only when the CDN confirms, retried, claimed from a consumer
that died, nothing lost."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from gateway.background import spawn, stop
from gateway.cdn.adapters import HttpPurger
from gateway.cdn.plan import PurgeKind
from gateway.cdn.queue import PURGE_GROUP, PURGE_STREAM, QueuedPurge, RedisPurgeQueue
from gateway.cdn.worker import PurgeWorker
from gateway.metrics import Metrics
from gateway.models import AssetRecord
from gateway.records import record_to_dict
from gateway.state.factory import open_store
from gateway.state.memory import MemoryAssetStore
from gateway.state.redis import INVALIDATION_CHANNEL, PUT_SCRIPT, PurgePlan, RedisAssetStore, asset_key
from tests.cdn.conftest import RecordingCdn
from tests.waiting import until


def public(asset_id: str, version: int = 1, **fields: object) -> AssetRecord:
    return AssetRecord(id=asset_id, version=version, object_key=f"o/{asset_id}", filename="f.pdf", **fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisAssetStore]:
    opened = open_store(redis_url, purge=True)
    assert isinstance(opened, RedisAssetStore)
    yield opened
    await opened.close()


def worker(store: RedisAssetStore, cdn: RecordingCdn, name: str, **options: float) -> PurgeWorker:
    return PurgeWorker(
        RedisPurgeQueue(store.client), HttpPurger(cdn.url, "Surrogate-Key"), consumer=name, **options
    )


async def unpublish(store: RedisAssetStore, asset_id: str) -> None:
    assert (await store.put(public(asset_id))).applied
    assert (await store.put(public(asset_id, 2, draft=True))).applied


async def pending(store: RedisAssetStore) -> int:
    return int((await store.client.xpending(PURGE_STREAM, PURGE_GROUP))["pending"])


async def test_a_write_that_changes_a_live_answer_enqueues_one_purge_inside_the_write(
    store: RedisAssetStore,
) -> None:
    assert (await store.put(public("a1"))).applied  # created: nothing to purge
    assert await store.client.xlen(PURGE_STREAM) == 0
    assert (await store.put(public("a1", 2, content_type="text/plain"))).applied
    assert (await store.put(public("a1", 3, content_type="text/plain"))).applied  # version only
    assert not (await store.put(public("a1", 3, draft=True))).applied  # stale: nothing
    assert (await store.put(public("a1", 4, deleted=True))).applied
    entries = await store.client.xrange(PURGE_STREAM)
    kinds = [(f[b"id"], f[b"kind"], f[b"keys"]) for _, f in entries]
    assert kinds == [(b"a1", b"soft", b"asset-a1"), (b"a1", b"hard", b"asset-a1")]
    assert entries[1][1][b"paths"] == b'["/media/a1/f.pdf"]'


async def test_a_forced_write_back_to_an_older_version_purges_too(store: RedisAssetStore) -> None:
    assert (await store.put(public("f1", 5))).applied
    assert (await store.put(public("f1", 2, draft=True), force=True)).applied
    entries = await store.client.xrange(PURGE_STREAM)
    assert [(f[b"id"], f[b"kind"]) for _, f in entries] == [(b"f1", b"hard")]


async def test_a_plan_made_against_an_older_record_is_sent_hard(store: RedisAssetStore) -> None:
    """Another write lands between the read a plan is made from and the write script: the soft
    purge planned against version 1 is enqueued hard, since version 2 may have taken access away."""
    assert (await store.put(public("g1"))).applied
    plan = PurgePlan.between(
        await store.client.hget(asset_key("g1"), "record"), public("g1", 3, etag='"new"')
    )
    assert plan.purge is not None and plan.purge.kind is PurgeKind.SOFT
    assert (await store.put(public("g1", 2, draft=True))).applied  # lands in between
    await store.client.delete(PURGE_STREAM)
    new = public("g1", 3, etag='"new"')
    # ARGV: channel, mode, purging, indexed (the script keeps the legacy path index), the record.
    args = [INVALIDATION_CHANNEL, "", "1", "1", *_record_args(new), *plan.script_args()]
    await store.client.eval(PUT_SCRIPT, 2, asset_key("g1"), PURGE_STREAM, *args)
    entries = await store.client.xrange(PURGE_STREAM)
    assert [(f[b"id"], f[b"kind"]) for _, f in entries] == [(b"g1", b"hard")]


def _record_args(record: AssetRecord) -> list[str]:
    """Version, JSON and id, then no legacy path held or expected (the record has none)."""
    return [str(record.version), json.dumps(record_to_dict(record), separators=(",", ":")), record.id, "", ""]


async def test_a_batch_import_enqueues_the_purges_its_lines_need(store: RedisAssetStore) -> None:
    await store.put_many([public(f"b{i}") for i in range(5)])
    results = await store.put_many([public(f"b{i}", 2, draft=i % 2 == 0) for i in range(5)])
    assert all(not isinstance(r, Exception) and r.applied for r in results)
    entries = await store.client.xrange(PURGE_STREAM)
    assert sorted(f[b"id"] for _, f in entries) == [b"b0", b"b2", b"b4"]


async def test_acknowledged_and_deleted_only_once_the_cdn_confirms(
    store: RedisAssetStore, cdn: RecordingCdn
) -> None:
    await unpublish(store, "a1")
    metrics = Metrics()
    purges = worker(store, cdn, "g1", backoff_base=0.01, backoff_cap=0.05)
    purges.metrics = metrics
    await purges.queue.prepare()

    cdn.down = True
    assert await purges.step(block=0.05) == 0
    assert [c.headers["Surrogate-Key"] for c in cdn.calls] == ["asset-a1"]
    assert cdn.calls[0].method == "PURGE" and cdn.calls[0].headers["X-Purge-Kind"] == "hard"
    assert await store.client.xlen(PURGE_STREAM) == 1 and await pending(store) == 1
    assert metrics.counts.purges[("http", "failed")] == 1

    cdn.down = False
    await until(lambda: purges.step(block=0.05), within=5, what="the retry is confirmed")
    assert cdn.confirmed() == ["asset-a1"]
    assert await store.client.xlen(PURGE_STREAM) == 0 and await pending(store) == 0
    assert metrics.counts.purges[("http", "sent")] == 1
    assert metrics.counts.purge_latency.count == 1
    await purges.purger.close()


async def test_a_dead_consumers_pending_purges_are_claimed_and_sent_once(
    store: RedisAssetStore, cdn: RecordingCdn
) -> None:
    await unpublish(store, "a1")
    await unpublish(store, "a2")
    dying = worker(store, cdn, "dying")
    await dying.queue.prepare()
    cdn.release.clear()  # the CDN holds the call: the gateway dies before it hears back
    task = asyncio.get_running_loop().create_task(dying.step(block=0.05))
    await until(lambda: cdn.received == 2, what="the dying gateway is mid-purge")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await dying.purger.close()
    cdn.release.set()
    assert await pending(store) == 2

    await until(lambda: len(cdn.calls) == 2, what="the calls the dead gateway never heard back from")
    survivor = worker(store, cdn, "survivor", claim_after=0.2)
    try:
        await until(lambda: survivor.step(block=0.05), within=5, what="the survivor claims and sends")
        await until(lambda: _step_until_empty(survivor, store), what="the survivor empties the queue")
    finally:
        await survivor.purger.close()
    # The dead gateway's calls reached the CDN but were never confirmed to it, so the survivor
    # sends them again: at least once, never lost.
    assert Counter(cdn.confirmed()) == {"asset-a1": 2, "asset-a2": 2}
    info = await store.client.xinfo_consumers(PURGE_STREAM, PURGE_GROUP)
    assert {c["name"]: c["pending"] for c in info} == {b"dying": 0, b"survivor": 0}


async def test_an_outage_loses_nothing_and_two_gateways_send_each_purge_once(
    store: RedisAssetStore, cdn: RecordingCdn, redis_url: str
) -> None:
    other = open_store(redis_url, purge=True)
    assert isinstance(other, RedisAssetStore)
    gateways = [
        worker(store, cdn, "g1", backoff_base=0.02, backoff_cap=0.2),
        worker(other, cdn, "g2", backoff_base=0.02, backoff_cap=0.2),
    ]
    cdn.down = True
    tasks = [spawn(g.run(), name=f"purges-{g.consumer}") for g in gateways]
    try:
        for i in range(60):
            await unpublish(store if i % 2 else other, f"x{i}")
        await until(lambda: len(cdn.calls) >= 60, what="every purge was tried during the outage")
        assert cdn.confirmed() == []
        assert await store.client.xlen(PURGE_STREAM) == 60
        cdn.down = False
        await until(lambda: len(cdn.confirmed()) >= 60, within=10, what="all confirmed after the outage")
        await until(lambda: _empty(store), within=5, what="the queue is empty")
    finally:
        for task in tasks:
            await stop(task)
        for g in gateways:
            await g.purger.close()
        await other.close()
    sent = Counter(cdn.confirmed())
    assert set(sent) == {f"asset-x{i}" for i in range(60)}
    assert set(sent.values()) == {1}, "a purge was confirmed twice"


class SwallowingQueue(RedisPurgeQueue):
    """Does what Python 3.11's asyncio.wait_for inside redis-py does now and then: a cancellation
    that lands in a read is lost, the read returns, and the task still counts as cancelling."""

    def __init__(self, client: object) -> None:
        super().__init__(client)
        self.reading = asyncio.Event()

    async def read(self, consumer: str, count: int, block: float) -> list[QueuedPurge]:
        self.reading.set()
        try:
            return await super().read(consumer, count, block)
        except asyncio.CancelledError:
            return []


async def test_a_cancellation_a_read_swallowed_still_stops_the_worker(
    store: RedisAssetStore, cdn: RecordingCdn
) -> None:
    queue = SwallowingQueue(store.client)
    purges = PurgeWorker(queue, HttpPurger(cdn.url, "Surrogate-Key"), consumer="g1")
    task = spawn(purges.run(), name="purges-g1")
    await queue.reading.wait()  # the worker is inside the blocking read
    task.cancel()
    try:
        await asyncio.wait({task}, timeout=5)  # waits without cancelling again
    finally:
        await purges.purger.close()
    assert task.cancelled(), "the worker went on after it was cancelled"


async def _step_until_empty(purges: PurgeWorker, store: RedisAssetStore) -> bool:
    await purges.step(block=0.05)
    return await _empty(store)


async def _empty(store: RedisAssetStore) -> bool:
    return await store.client.xlen(PURGE_STREAM) == 0 and await pending(store) == 0


async def test_memory_store_queues_in_process(cdn: RecordingCdn) -> None:
    memory = MemoryAssetStore(purge=True)
    await memory.put(public("m1"))
    await memory.put(public("m1", 2, draft=True))
    assert memory.purges is not None
    purges = PurgeWorker(memory.purges, HttpPurger(cdn.url, "xkey"), consumer="only")
    assert await purges.step(block=0.05) == 1
    assert cdn.confirmed("xkey") == ["asset-m1"]
    assert await memory.purges.backlog() == (0, None)
    await purges.purger.close()


async def test_a_lost_consumer_group_is_created_again(store: RedisAssetStore, cdn: RecordingCdn) -> None:
    """Redis restarted without its data: the group is gone; the next purge still goes out."""
    purges = worker(store, cdn, "g1")
    task = spawn(purges.run(), name="purges-g1")
    try:
        await until(lambda: store.client.exists(PURGE_STREAM), what="the group and stream exist")
        await store.client.delete(PURGE_STREAM)
        await unpublish(store, "n1")
        await until(lambda: cdn.confirmed() == ["asset-n1"], within=5, what="the purge after the loss")
    finally:
        await stop(task)
        await purges.purger.close()
