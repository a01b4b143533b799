"""monitoring/: the Prometheus alert rules pass `promtool test rules` (each alert fires on the series
that should raise it and stays quiet otherwise), and every expression in the rules and the Grafana
dashboard parses and names only metrics that gateway/metrics.py declares."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.metrics import FAMILIES
from tests.servers import require_binary

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
# Names the gateway does not export yet, allowed in expressions ahead of time (none now).
COMING: set[str] = set()
PROMETHEUS_OWN = {"up"}  # written by Prometheus itself for every scrape target
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
             "bool", "offset", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        if match.group(1).lower() not in _KEYWORDS:
            names.add(match.group(1))
    return names


def declared(name: str) -> bool:
    if name in FAMILIES:
        return True
    return any(
        name.endswith(part) and FAMILIES.get(name[: -len(part)], ("",))[0] == "histogram"
        for part in _HISTOGRAM_PARTS
    )


def alert_expressions() -> dict[str, str]:
    document = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found[f"{panel['title']} / {target['refId']}"] = target["expr"]
    return found


def as_plain_promql(expr: str) -> str:
    """Grafana's variables replaced the way Grafana would, so promtool can parse the result."""
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*")


def test_metric_names_are_read_from_promql() -> None:
    expr = 'sum by (le) (rate(a_bucket{x="y", status=~"5.."}[5m])) / on () b > 0.5 and c offset 1m'
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    promtool = require_binary("promtool")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run(
            [promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == set(alert_expressions())


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    rules = [
        {"record": f"dashboard:expr_{n}", "expr": as_plain_promql(expr)}
        for n, expr in enumerate(dashboard_expressions().values())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_expression_names_a_metric_we_export(source: str) -> None:
    expressions = alert_expressions() if source == "alerts" else dashboard_expressions()
    unknown = {
        where: sorted(name for name in metric_names(expr) if not declared(name) and name not in COMING)
        for where, expr in expressions.items()
    }
    unknown = {where: names for where, names in unknown.items() if set(names) - PROMETHEUS_OWN}
    assert unknown == {}


def test_the_dashboard_shows_every_exported_metric() -> None:
    shown = set().union(*(metric_names(expr) for expr in dashboard_expressions().values()))
    shown |= {name[: -len(part)] for name in shown for part in _HISTOGRAM_PARTS if name.endswith(part)}
    assert set(FAMILIES) - shown == set()
