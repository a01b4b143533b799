"""The benchmark's own arithmetic: what it reports must mean what the table says."""

from __future__ import annotations

import json

from bench import fixtures
from bench.openloop import percentile
from bench.run import Check, Report, Row, checks
from gateway.records import record_to_dict


def test_bulk_payloads_are_what_record_serialises_to() -> None:
    for prefix in (fixtures.BULK_PREFIX, fixtures.IMPORT_PREFIX):
        for n in (0, 7, 999_999):
            asset_id, payload = next(fixtures.bulk_payloads(n, n + 1, prefix))
            assert asset_id == fixtures.bulk_id(n, prefix)
            assert payload == json.dumps(record_to_dict(fixtures.record(asset_id)), separators=(",", ":"))


def test_percentile_is_the_nearest_rank() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 0.50) == 500
    assert percentile(values, 0.99) == 990
    assert percentile(values, 0.999) == 999
    assert percentile([5], 0.99) == 5


def test_a_bound_from_above_is_met_at_or_under_it() -> None:
    assert Check("cpu", 1.10, 1.10, at_least=False).verdict == "✓"
    assert Check("cpu", 1.11, 1.10, at_least=False).verdict == "✗"
    assert Check("ratio", 0.74, 0.75, at_least=True).verdict == "✗"
    assert Check("ratio", None, 0.75, at_least=True).verdict == "not run"


def test_every_target_is_listed_even_when_not_run() -> None:
    report = Report()
    report.add("public", Row("public", cpu_us=100.0))
    report.add("auth", Row("auth", cpu_us=120.0))
    listed = checks(report)
    assert len(listed) == 7
    auth = next(c for c in listed if "/auth" in c.name)
    assert auth.value == 1.2 and auth.met is False
    assert [c.verdict for c in listed if "RSS" in c.name] == ["not run", "not run"]
