"""The API on a model the learner trained: simulator -> Kafka -> ShardWorker -> Redis.

Functional: /predict gives exactly what River's predict_proba_one gives on the learner's
own features, built from the same aggregates at the same time.

Statistical: on 1,000 unseen simulator requests (10 candidates each) for users the model
has seen, the mean predicted purchase probability is close to the purchase rate drawn
from the simulator's hidden probabilities, and the ranking clearly beats chance.

The app's clock is pinned to one second after the stream's last event: that is "now" for
a learner that just caught up, and it makes the features (and the test) reproducible.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import redis

from api.settings import ApiSettings
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate, world
from learner import modelcodec
from learner.compose import build_worker
from learner.features import FeatureConfig
from learner.layout import ShardKeys
from learner.redisconn import connect
from learner.settings import LearnerSettings
from stream.settings import StreamSettings
from stream.topics import ensure_topics
from tests.api.conftest import running_app
from tests.api.helpers import JOIN_WINDOW_S, chunks, direct_scores, request_body, roc_auc
from tests.learner.harness import running_worker, send
from tests.support import learner_seal, own_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = SimulatorConfig(seed=21, count=60_000, n_users=300, n_items=150)


@dataclass(frozen=True)
class Trained:
    settings: StreamSettings
    client: redis.Redis
    records: list[SimRecord]
    keys: ShardKeys

    @property
    def at(self) -> float:
        return self.records[-1].ts_ms / 1000 + 1.0

    def model(self, variant: str = "main") -> object:
        blob = self.client.hget(self.keys.state, f"model:{variant}")
        assert blob is not None
        return modelcodec.loads(blob)


@pytest.fixture(scope="module")
def trained(stack_settings: StreamSettings) -> Iterator[Trained]:
    unique = "t" + uuid.uuid4().hex[:12]
    # One partition: the learner then sees the stream in event-time order. With several,
    # a catching-up consumer reads them in large uneven runs, and the impressions that
    # land behind the watermark stay pending while their purchases are learned (a model
    # trained on positives: see docs/api.md).
    settings = own_topics(stack_settings, f"test:{unique}", unique, partitions=1)
    ensure_topics(settings)
    records = list(generate(CONFIG))
    send(settings, records)
    client: redis.Redis = connect(settings)
    learner_settings = LearnerSettings(
        metrics_port=0,
        # Nobody takes over here: a long lease keeps a slow publish (the tree) from
        # expiring it on a busy machine.
        lease_ttl_ms=20_000,
        poll_max_records=500,
        group_id=settings.key_prefix,
        join_window_s=JOIN_WINDOW_S,
        variants={"main": "logreg", "tree": "tree"},
    )
    worker = build_worker(settings, learner_settings, client, seal=learner_seal())
    with running_worker(worker, client, settings, 240, "the learner"):
        pass
    yield Trained(settings, client, records, ShardKeys(settings.key_prefix, "main"))
    keys = list(client.scan_iter(match=f"{settings.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def seen_users(records: list[SimRecord]) -> list[int]:
    return sorted({int(r.key.decode()[1:]) for r in records if r.type == "impression"})


@pytest.mark.parametrize("variant", ["main", "tree"])
def test_predict_gives_the_learned_models_own_scores(trained: Trained, variant: str) -> None:
    model = trained.model(variant)
    store = world(CONFIG)
    rng = np.random.default_rng(8)
    users = seen_users(trained.records)
    api = ApiSettings(traffic={variant: 1.0})
    with running_app(api, trained.settings, clock=lambda: trained.at) as client:
        for _ in range(40):
            request = store.request_for(users[int(rng.integers(len(users)))], rng, k=30)
            got = client.post("/predict", json=request_body(request)).json()
            assert got["variant"] == variant and got["degraded"] is False
            want = direct_scores(
                trained.client, trained.keys, model, request, trained.at, FeatureConfig()
            )
            np.testing.assert_allclose([s["score"] for s in got["scores"]], want, rtol=0, atol=1e-9)


def test_predictions_are_calibrated_and_rank_better_than_chance(trained: Trained) -> None:
    """Tolerances, from what this test measures:

    - the observed purchase rate of 10,000 Bernoulli draws at p ~ 0.08 has a standard
      error of 0.0027: 3 SE is 0.008;
    - the model is River's LogisticRegression with plain SGD (lr 0.01), learning online
      from aggregates that grow during the stream. On its own last examples its mean
      prediction was measured at 0.6x to 1.2x the true rate across simulator seeds
      (21: 0.91x, 22: 1.23x, 23: 0.64x, 24: 0.68x, learner core without Kafka): that
      calibration error is the model's, not the API's, and the functional test pins
      the API to the model exactly. So: |mean predicted - observed| <= 0.35 x observed
      (0.028 at 0.08), which a broken pipeline (wrong aggregates, wrong time, features
      out of order, the untrained 0.5) misses by far.
    - AUC: chance is 0.5; the hidden model itself (the best any model can do) reaches
      ~0.79 on these draws; this model measured 0.70 (mean predicted 0.070 against
      0.082 observed). Required: > 0.65.
    """
    store = world(CONFIG)
    rng = np.random.default_rng(2026)
    outcomes = np.random.default_rng(7)
    users = seen_users(trained.records)
    requests = [
        store.request_for(users[int(rng.integers(len(users)))], rng, k=10) for _ in range(1000)
    ]
    predicted: list[float] = []
    hidden: list[float] = []
    with running_app(ApiSettings(), trained.settings, clock=lambda: trained.at) as client:
        for batch in chunks(requests, 100):
            for request in batch:
                got = client.post("/predict", json=request_body(request)).json()
                predicted += [s["score"] for s in got["scores"]]
                hidden += [c.p_purchase for c in request.candidates]
    bought = outcomes.random(len(hidden)) < np.array(hidden)
    observed = float(bought.mean())
    mean_predicted = float(np.mean(predicted))
    auc = roc_auc(bought.tolist(), predicted)
    best_auc = roc_auc(bought.tolist(), hidden)
    print(
        f"mean predicted {mean_predicted:.4f}, observed {observed:.4f}, "
        f"hidden mean {np.mean(hidden):.4f}; AUC {auc:.3f} (hidden model {best_auc:.3f})"
    )
    assert abs(mean_predicted - observed) <= 0.35 * observed
    assert auc > 0.65
    assert len(predicted) == 10_000
