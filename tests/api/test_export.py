"""GET /models/{shard}/{variant}/export on a model the learner's core published: the
document gives back the served model's scores, and only the logistic pipeline exports."""

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.settings import ApiSettings
from headrace.sim.simulator import generate, world
from learner.features import FeatureConfig
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.api.helpers import request_body
from tests.learner.harness import InProcessLearner

pytestmark = pytest.mark.integration

AT = 1_767_229_200.0  # 2026-01-01T01:00Z: one hour into SMALL's stream
EXPORT = ApiSettings(export_models=True, shadow_variant="fm", shadow_rate=0.0)  # fm: loaded


@pytest.fixture
def trained(settings: StreamSettings, redis_client: redis.Redis) -> Iterator[InProcessLearner]:
    learner = InProcessLearner(settings, redis_client, {"main": "logreg", "fm": "fm"})
    learner.process(generate(SMALL))
    learner.publish()
    yield learner
    learner.close()


@pytest.fixture
def client(settings: StreamSettings, trained: InProcessLearner) -> Iterator[TestClient]:
    with running_app(EXPORT, settings, clock=lambda: AT) as app:
        yield app


def score(doc: dict[str, Any], x: dict[str, Any]) -> float:
    """The document's probability, computed as scorer.js does (River's pipeline)."""
    z = doc["intercept"]
    for name, value in x.items():
        if isinstance(value, float):
            var = doc["scaler"]["vars"].get(name, 0.0)
            if var and name in doc["weights"]:
                z += (value - doc["scaler"]["means"][name]) / var**0.5 * doc["weights"][name]
        elif isinstance(value, str):
            key = f"{name}_{value}"
            z += doc["one_hot"].get(key, doc["weights"].get(key, 0.0))
    return 0.0 if z < -30 else 1.0 if z > 30 else 1 / (1 + math.exp(-z))


def test_the_export_scores_as_the_api_does(
    client: TestClient, redis_client: redis.Redis, trained: InProcessLearner
) -> None:
    from learner.aggregates import decode_hash
    from learner.features import features
    from learner.storestats import StoreStats

    response = client.get("/models/main/main/export")
    assert response.status_code == 200
    doc = response.json()
    assert doc["schema_version"] == 1 and doc["format"] == "headrace.logreg"
    assert (doc["model"], doc["variant"], doc["kind"]) == ("main", "main", "logreg")
    assert doc["feature_config"] == {"half_life_s": FeatureConfig().half_life_s}
    assert any(key.startswith("category_") for key in doc["one_hot"])
    request = world(SMALL).request_for(4, np.random.default_rng(4), k=30)
    answer = client.post("/predict", json=request_body(request)).json()
    assert answer["version"] == doc["version"] and answer["epoch"] == doc["epoch"]
    keys = trained.keys
    user = decode_hash(redis_client.hgetall(keys.user(request.user_id)))
    stats = StoreStats.load(doc["store_stats"], FeatureConfig().half_life_s)
    assert stats.queries  # the trained state's pages had queries
    for c, entry in zip(request.candidates, answer["scores"], strict=True):
        item = decode_hash(redis_client.hgetall(keys.item(c.item_id)))
        x = features(request.context, c.item, user, item, AT, FeatureConfig(), stats)
        assert score(doc, x) == pytest.approx(entry["score"], abs=1e-12)


def test_an_unchanged_model_is_not_sent_again(client: TestClient) -> None:
    first = client.get("/models/main/main/export")
    etag = first.headers["etag"]
    again = client.get("/models/main/main/export", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/models/main/fm/export", 409, "only the logistic pipeline (kind logreg) exports"),
        ("/models/main/nope/export", 404, "shard main has no variant 'nope' (it has: main, fm)"),
        ("/models/elsewhere/main/export", 404, "no model is served for shard 'elsewhere'"),
    ],
)
def test_what_does_not_export_says_why(
    client: TestClient, path: str, status: int, says: str
) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert says in response.json()["error"]["message"]


def test_export_is_off_by_default(settings: StreamSettings, trained: InProcessLearner) -> None:
    with running_app(ApiSettings(), settings, clock=lambda: AT) as client:
        response = client.get("/models/main/main/export")
    assert response.status_code == 404
    assert "HEADRACE_EXPORT_MODELS=true" in response.json()["error"]["message"]
