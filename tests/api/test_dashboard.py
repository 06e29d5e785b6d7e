"""The dashboard's routes against the real Redis: the page and its files, the metrics
history the learner appends with each publish, and the admin token check."""

import re
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from api.settings import ApiSettings
from headrace.sim.simulator import generate
from learner.layout import ShardKeys
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.learner.harness import InProcessLearner

pytestmark = pytest.mark.integration

TOKEN = "operator-token-0123456789abcdef"


@pytest.fixture
def every_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_HISTORY_EVERY_MS", "0")


def test_each_publish_appends_a_point_that_outlives_the_api(
    settings: StreamSettings, redis_client: redis.Redis, every_publish: None
) -> None:
    learner = InProcessLearner(settings, redis_client, {"main": "logreg", "tree": "tree"})
    records = list(generate(SMALL))
    versions = []
    for start in range(0, len(records), 2_000):
        learner.process(records[start : start + 2_000])
        versions.append(learner.publish())
    learner.close()
    with running_app(ApiSettings(), settings) as client:
        points = client.get("/dashboard/history").json()["points"]
        meta = client.get("/models").json()["models"][0]
    assert [p["version"] for p in points] == versions
    assert [p["n_learned"] for p in points] == sorted(p["n_learned"] for p in points)
    assert points[-1]["n_learned"] == learner.learner.counts["learned"] > 0
    assert all(p["learned_per_s"] is not None and p["events_per_s"] > 0 for p in points[1:])
    served = {v["name"]: v["metrics"] for v in meta["variants"]}
    for name in ("main", "tree"):
        last = points[-1]["variants"][name]
        assert last["rolling_log_loss"] == served[name]["rolling_log_loss"]
        assert last["roc_auc"] == served[name]["roc_auc"]
    # A restarted API reads the same history, and `after` gives only what came since.
    with running_app(ApiSettings(), settings) as client:
        again = client.get("/dashboard/history").json()["points"]
        after = client.get("/dashboard/history", params={"after": points[1]["id"]}).json()
    assert again == points
    assert after["points"] == points[2:]
    assert after["model"] == "main"


def test_the_history_is_capped(
    settings: StreamSettings,
    redis_client: redis.Redis,
    every_publish: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADRACE_HISTORY_MAX_POINTS", "100")
    learner = InProcessLearner(settings, redis_client)
    records = list(generate(SMALL))[:600]
    for start in range(0, len(records), 2):
        learner.process(records[start : start + 2])
        learner.publish()
    learner.close()
    kept = redis_client.xlen(ShardKeys(settings.key_prefix, "main").history)
    # Trimmed in whole stream nodes (about 100 entries each): near the cap, never all 300.
    assert 100 <= kept <= 200


def test_bad_history_queries_are_refused(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    with running_app(ApiSettings(), settings, wait_ready=False) as client:
        assert client.get("/dashboard/history", params={"model": "nope"}).status_code == 404
        too_big = {"after": f"{2**64}-0"}
        for params in ({"after": "12; drop"}, too_big, {"limit": 0}, {"limit": 1_000_000}):
            assert client.get("/dashboard/history", params=params).status_code == 422, params
        assert client.get("/dashboard/history").json() == {"model": "main", "points": []}
        last = f"{2**64 - 1}-{2**64 - 1}"
        assert client.get("/dashboard/history", params={"after": last}).json()["points"] == []


def test_the_page_and_its_files_are_served_with_a_strict_policy(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings, wait_ready=False) as c:
        page = c.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        html = page.text
        assert TOKEN not in html
        # No inline script or style: every script has a src served from this origin.
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
        assert " style=" not in html
        for src in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', html):
            response = c.get(src)
            assert response.status_code == 200, src
            assert response.content
        assert c.get("/dashboard/static/nothing.js").status_code == 404
        assert c.get("/dashboard/static/../settings.py").status_code == 404


def test_the_static_files_are_package_data() -> None:
    """What `pip install` copies: the files the page loads are declared in pyproject."""
    root = Path(__file__).resolve().parents[2]
    pyproject = (root / "pyproject.toml").read_text()
    assert 'api = ["static/*"]' in pyproject
    assert {p.name for p in (root / "api" / "static").iterdir()} >= {
        "dashboard.html",
        "dashboard.js",
        "chart.js",
        "dashboard.css",
    }


def test_the_admin_token_check(settings: StreamSettings, redis_client: redis.Redis) -> None:
    with running_app(ApiSettings(), settings, wait_ready=False) as client:
        off = client.get("/admin/verify", headers={"Authorization": f"Bearer {TOKEN}"})
        assert off.status_code == 404
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings, wait_ready=False) as c:
        assert c.get("/admin/verify").status_code == 401
        wrong = {"Authorization": "Bearer " + "y" * len(TOKEN)}
        assert c.get("/admin/verify", headers=wrong).status_code == 403
        ok = c.get("/admin/verify", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["admin"] is True
