"""The Prometheus rules and the Grafana dashboard only query metrics headrace exports."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\b(headrace_[a-z_]+)")


def exported() -> set[str]:
    """Metric names our code registers (counters also export `_total`, histograms `_bucket`)."""
    names: set[str] = set()
    for module in ("learner/telemetry.py", "api/telemetry.py"):
        names |= set(re.findall(r'"(headrace_[a-z_]+)"', (ROOT / module).read_text()))
    return names


def base(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_alert_rules_query_only_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert len(exprs) >= 8
    for rule in (r for group in rules["groups"] for r in group["rules"]):
        assert rule["alert"].startswith("Headrace")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    used = {base(m) for e in exprs for m in METRIC.findall(e)}
    assert used and used <= exported(), used - exported()


def test_dashboard_panels_query_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "headrace.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("learned", "lag", "log loss", "version", "drift", "quarantined", "rollback"):
        assert topic in titles, topic
    used = {base(m) for e in exprs for m in METRIC.findall(e)}
    assert used and used <= exported(), used - exported()


def test_prometheus_loads_the_rules_and_scrapes_both_processes() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    assert targets == {"learn:9101", "serve:8000"}
