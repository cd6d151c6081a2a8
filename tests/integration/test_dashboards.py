"""The Grafana dashboard and the Prometheus alert rules name only metrics a real worker exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.kafka

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "milestream.json"
ALERTS = DEPLOY / "alerts.yml"
METRIC = re.compile(r"\bmilestream_[a-z_]+\b")
# Sample names a metric family of each type has in the text format.
SUFFIXES = {"counter": ("", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created")}


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def exposed_samples(metrics_text: str) -> set[str]:
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", metrics_text, re.M):
        names.update(family + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def test_every_alert_rule_is_complete():
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"]


def test_the_dashboard_and_the_alerts_query_metrics_the_worker_exposes(worker):
    exposed = exposed_samples(worker.http("/metrics"))
    queried = {
        name for query in dashboard_queries() + [r["expr"] for r in alert_rules()] for name in METRIC.findall(query)
    }
    assert queried, "the dashboard names no metric"
    assert queried <= exposed, f"not exposed by the worker: {sorted(queried - exposed)}"
