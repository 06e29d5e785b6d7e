"""Every kind of variant through the learner's core and the API: fm, and model functions.

The learner's own core learns SMALL's stream with four variants (the logistic default,
the factorization machine, and two `module:function` variants: one that the API can
score with numpy, one it must ask River), publishes them, and the app serves each.
"""

from typing import Any

import numpy as np
import pytest
import redis

from api.settings import ApiSettings
from headrace.sim.simulator import generate, world
from learner import modelcodec
from learner.features import FeatureConfig
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.api.helpers import direct_scores, request_body
from tests.learner.harness import InProcessLearner

pytestmark = pytest.mark.integration

AT = 1_767_229_200.0  # 2026-01-01T01:00Z: one hour into SMALL's stream
HOOKS = "tests.learner.hook_models"
VARIANTS = {
    "main": "logreg",
    "fm": "fm",
    "crossed": f"{HOOKS}:crossed_logreg",
    "linear": f"{HOOKS}:plain_logreg",
}
SCORERS = {"main": "numpy-linear", "fm": "numpy-fm", "crossed": "river", "linear": "numpy-linear"}


@pytest.fixture
def trained(settings: StreamSettings, redis_client: redis.Redis) -> Any:
    learner = InProcessLearner(settings, redis_client, VARIANTS)
    learner.process(generate(SMALL))
    learner.publish()
    yield learner
    learner.close()


@pytest.mark.parametrize("variant", ["fm", "crossed", "linear"])
def test_each_kind_answers_with_the_published_models_own_scores(
    settings: StreamSettings, redis_client: redis.Redis, trained: InProcessLearner, variant: str
) -> None:
    blob = redis_client.hget(trained.keys.state, f"model:{variant}")
    assert blob is not None
    model = modelcodec.loads(blob)
    store = world(SMALL)
    rng = np.random.default_rng(3)
    with running_app(ApiSettings(traffic={variant: 1.0}), settings, clock=lambda: AT) as client:
        for _ in range(20):
            request = store.request_for(int(rng.integers(0, SMALL.n_users)), rng, k=15)
            got = client.post("/predict", json=request_body(request)).json()
            assert got["variant"] == variant
            scores = [s["score"] for s in got["scores"]]
            want = direct_scores(redis_client, trained.keys, model, request, AT, FeatureConfig())
            np.testing.assert_allclose(scores, want, rtol=0, atol=1e-9)
            # A model that learned something does not score every candidate alike.
            assert np.ptp(scores) > 0


def test_models_says_which_scorer_answers_for_each_variant(
    settings: StreamSettings, trained: InProcessLearner
) -> None:
    shares = dict.fromkeys(VARIANTS, 0.25)
    with running_app(ApiSettings(traffic=shares), settings, clock=lambda: AT) as client:
        (shard,) = client.get("/models").json()["models"]
    listed = {v["name"]: v for v in shard["variants"]}
    assert {name: v["kind"] for name, v in listed.items()} == VARIANTS
    assert {name: v["scorer"] for name, v in listed.items()} == SCORERS
    for facts in listed.values():
        assert facts["loaded"] and facts["n_learned"] > 1000
