"""The benchmark's own arithmetic: what it reports must mean what the table says."""

from __future__ import annotations

import json

import pytest

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
    report.add("floor", Row("floor", cpu_us=50.0))
    report.add("public", Row("public", cpu_us=100.0))
    report.add("auth", Row("auth", cpu_us=120.0))
    listed = checks(report)
    assert len(listed) == 7
    auth = next(c for c in listed if "/auth" in c.name)
    assert auth.value == pytest.approx(1.2) and auth.met is False
    assert [c.verdict for c in listed if "RSS" in c.name] == ["not run", "not run"]


def test_a_paired_rows_ratios_are_the_medians_of_its_rounds() -> None:
    report = Report()
    report.add("floor", Row("floor", cpu_us=999.0))  # not what the paired rows are compared with
    # (row req/s, row cpu µs, floor req/s, floor cpu µs) per round: the floor drifts between rounds
    public = report.add(
        "public", Row("public", rounds=[(900, 50, 1000, 45), (450, 100, 500, 90), (700, 60, 1000, 45)])
    )
    auth = report.add(
        "auth", Row("auth", rounds=[(800, 60, 1000, 45), (400, 120, 500, 90), (600, 75, 1000, 45)])
    )
    assert report.ratio(public) == pytest.approx(0.9)  # of 0.9, 0.9, 0.7
    assert report.cpu_ratio(public) == pytest.approx(0.9)  # of 0.9, 0.9, 0.75
    assert report.ratio(auth) == pytest.approx(0.8)  # of 0.8, 0.8, 0.6
    auth_check = next(c for c in checks(report) if "/auth" in c.name)
    assert auth_check.value == pytest.approx(
        0.9 / 0.75
    )  # cpu ratios: public 0.9, auth median(0.75, 0.75, 0.6)
