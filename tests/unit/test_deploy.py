"""deploy/: the Prometheus alert rules and the Grafana dashboard parse, and every keeper_*
metric they query exists in keeper/metrics.py (under the name Prometheus exposes); the
Dockerfile runs the daemon and holds no key (it is not built here: CI cannot fetch base
images)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from keeper.breakers import BreakerLimits, Breakers
from keeper.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\b(keeper_[a-z_]+)\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                              "_created"),
            "gauge": ("",)}


def exposed_names() -> set[str]:
    """Every sample name the keeper's /metrics can show."""
    metrics = Metrics(strategies=["aave_v3"])
    metrics.track_breakers(Breakers(BreakerLimits.from_eth(3, None, None)))
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def rules() -> dict[str, Any]:
    """The rules file: YAML in its JSON-compatible flow style, after its comment lines."""
    text = (DEPLOY / "prometheus" / "keeper-rules.yml").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    data: dict[str, Any] = json.loads(body)
    return data


def test_alert_rules_parse_and_query_real_metrics() -> None:
    names = exposed_names()
    groups = rules()["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    assert {"KeeperDown", "KeeperHeadStalled", "KeeperBreakerTripped",
            "KeeperLowBalance"} <= {rule["alert"] for rule in alerts}
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and re.fullmatch(r"\d+[smh]", rule["for"])
        used = set(METRIC.findall(rule["expr"]))
        assert used <= names, (rule["alert"], used - names)
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_dashboard_parses_and_queries_real_metrics() -> None:
    names = exposed_names()
    dashboard = json.loads((DEPLOY / "grafana" / "keeper-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["uid"]
    panels = dashboard["panels"]
    assert len(panels) >= 10
    queried: set[str] = set()
    for panel in panels:
        assert panel["title"] and panel["fieldConfig"]["defaults"]["unit"]
        for target in panel["targets"]:
            queried.update(METRIC.findall(target["expr"]))
    assert queried <= names, queried - names
    assert {"keeper_head_block", "keeper_breaker_tripped",
            "keeper_realized_profit_wei_total"} <= queried


def test_dockerfile_runs_the_daemon_without_a_key() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["keeper"', text, re.MULTILINE)
    assert re.search(r'^CMD \["run", "--config"', text, re.MULTILINE)
    assert "KEEPER_EXECUTION__JOURNAL=/var/lib/keeper/" in text
    assert not re.search(r"0x[0-9a-fA-F]{64}", text)  # never a key baked in
    assert "USER keeper" in text
