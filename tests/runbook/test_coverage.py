"""The runbook explains every metric headrace exports and every alert rule it ships."""

from pathlib import Path

import yaml

from tests.runbook.runbook import RUNBOOK
from tests.test_deploy import exported

ROOT = Path(__file__).resolve().parents[2]


def test_every_metric_is_explained() -> None:
    text = RUNBOOK.read_text()
    missing = sorted(name for name in exported() if f"`{name}" not in text)
    assert missing == [], f"explain these in docs/operations.md: {missing}"


def test_every_alert_is_explained_with_what_to_do() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    names = [r["alert"] for group in rules["groups"] for r in group["rules"]]
    rows = {
        line.split("`")[1]: line
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("| `Headrace")
    }
    assert sorted(rows) == sorted(names)
    # Each row: the alert, what it means, what to do.
    assert all(row.count(" | ") == 2 and len(row) > 120 for row in rows.values())
