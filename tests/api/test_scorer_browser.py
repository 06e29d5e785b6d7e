"""The exported logistic model scored by api/static/scorer.js in a real headless Chromium.

The app runs in a real uvicorn server (in this process, with a fixed clock, so the test
can compute the very features the API computed); the learner's core published a model
trained on a simulator stream. The page loads scorer.js and the export from the app, and
scores 1,000 simulator candidates from their `features()` dicts; every probability equals
the one /predict answered to 1e-9.
"""

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import uvicorn

from api.app import create_app
from api.settings import ApiSettings
from headrace.sim.simulator import SimulatorConfig, generate, world
from learner.aggregates import decode_hash
from learner.features import FeatureConfig, features
from learner.layout import read_meta
from learner.storestats import StoreStats
from stream.settings import StreamSettings
from tests.api.helpers import request_body
from tests.api.test_dashboard_browser import browser
from tests.learner.harness import InProcessLearner
from tests.support import free_port, signing_key, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AT = 1_767_229_200.0  # 2026-01-01T01:00Z: one hour into the stream
STREAM = SimulatorConfig(seed=31, count=8_000, n_users=200, n_items=1_000)
CANDIDATES = 1_000

SCORE = """
const rows = arguments[0];
const done = arguments[arguments.length - 1];
const script = document.createElement("script");
script.src = "/dashboard/static/scorer.js";
script.onerror = () => done({error: "scorer.js did not load"});
script.onload = () => fetch("/models/main/main/export")
  .then((r) => r.json())
  .then((doc) => {
    const model = HeadraceScorer.load(doc);
    done({version: model.version, epoch: model.epoch, scores: model.predictMany(rows)});
  })
  .catch((e) => done({error: String(e)}));
document.head.appendChild(script);
"""


@pytest.fixture
def server(settings: StreamSettings, redis_client: redis.Redis) -> Iterator[tuple[str, Any]]:
    """The app over a freshly published model, served by uvicorn on 127.0.0.1."""
    learner = InProcessLearner(settings, redis_client, {"main": "logreg"})
    learner.process(generate(STREAM))
    learner.publish()
    api = ApiSettings(export_models=True, max_candidates=CANDIDATES)
    app = create_app(api, settings, verify_keys=(signing_key().public,), clock=lambda: AT)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: served.started, "the server", 60)
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, "a model", 60)
        yield url, learner
    finally:
        served.should_exit = True
        thread.join(timeout=30)
        learner.close()


def test_the_browser_scores_1000_candidates_as_the_api(
    server: tuple[str, InProcessLearner], redis_client: redis.Redis
) -> None:
    url, learner = server
    store, rng = world(STREAM), np.random.default_rng(9)
    rows: list[dict[str, Any]] = []
    served: list[float] = []
    versions = set()
    while len(rows) < CANDIDATES:
        request = store.request_for(int(rng.integers(0, STREAM.n_users)), rng, k=250)
        body = request_body(request)
        body["candidates"] = body["candidates"][: CANDIDATES - len(rows)]
        answer = httpx.post(f"{url}/predict", json=body, timeout=30).json()
        versions.add((answer["epoch"], answer["version"]))
        served += [entry["score"] for entry in answer["scores"]]
        # The features the API computed: the same aggregates, the same clock.
        user = decode_hash(redis_client.hgetall(learner.keys.user(request.user_id)))
        meta = read_meta(redis_client, learner.keys) or {}
        stats = StoreStats.load(meta.get("store_stats"), FeatureConfig().half_life_s)
        for c in request.candidates[: len(body["candidates"])]:
            item = decode_hash(redis_client.hgetall(learner.keys.item(c.item_id)))
            rows.append(features(request.context, c.item, user, item, AT, FeatureConfig(), stats))
    assert len(rows) == len(served) == CANDIDATES
    driver = browser()
    try:
        driver.set_script_timeout(60)
        driver.get(f"{url}/health")
        got = driver.execute_async_script(SCORE, rows)
    finally:
        driver.quit()
    assert "error" not in got, got
    assert versions == {(got["epoch"], got["version"])}
    np.testing.assert_allclose(got["scores"], served, rtol=0, atol=1e-9)
    # A model with an opinion: the candidates do not all score alike.
    assert np.ptp(served) > 0.01
