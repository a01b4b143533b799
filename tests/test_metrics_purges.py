"""The purge metrics (DESIGN 2.9) under the names alert rules use, merged across workers: counters
added up, the shared queue's gauges not."""

from __future__ import annotations

from gateway.metrics import Counts, Metrics, PolicyState, render


def test_purge_metrics_are_exported_and_merge_across_workers() -> None:
    one, two = Metrics(), Metrics()
    one.purges_confirmed("fastly", [0.003, 0.2])
    one.purges_failed("fastly", 3)
    one.purge_backlog(7, 42.5)
    two.purges_confirmed("fastly", [400.0])
    two.purge_backlog(7, 41.0)
    total = Counts.from_json(one.snapshot().to_json())  # as another worker reads a snapshot file
    total.merge(two.snapshot())
    text = render(total, PolicyState("r1", 0), started=0.0, workers=2)
    lines = set(text.splitlines())
    assert "asset_gateway_purge_queue_length 7" in lines
    assert "asset_gateway_purge_oldest_pending_seconds 42.5" in lines
    assert 'asset_gateway_purges_sent_total{adapter="fastly"} 3' in lines
    assert 'asset_gateway_purges_failed_total{adapter="fastly"} 3' in lines
    assert 'asset_gateway_purge_seconds_bucket{le="0.005"} 1' in lines
    assert 'asset_gateway_purge_seconds_bucket{le="300"} 2' in lines
    assert 'asset_gateway_purge_seconds_bucket{le="+Inf"} 3' in lines
    assert "asset_gateway_purge_seconds_count 3" in lines


def test_an_idle_process_exports_the_purge_gauges_at_zero() -> None:
    lines = render(Metrics().snapshot(), PolicyState("r1", 0), started=0.0).splitlines()
    assert "asset_gateway_purge_queue_length 0" in lines
    assert "asset_gateway_purge_oldest_pending_seconds 0" in lines
