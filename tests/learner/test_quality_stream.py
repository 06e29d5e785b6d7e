"""What the learner learns through Kafka at the shipped defaults, against the best possible.

A simulator stream goes through a real `headrace learn` on three partitions with nothing
changed but its topics and keys. The model it publishes then scores 1,000 storefront
requests it never saw, and is compared with the simulator's hidden purchase model on the
same requests (tests/heldout.py). The figures the learner reports are compared with what
the hidden model itself reaches on the stream: no honest estimate is far above it.
Loose bounds for a fixed seed; bench/quality.py prints the exact figures over seeds.
"""

from pathlib import Path

import numpy as np
import pytest
import redis

from headrace.sim.simulator import SimulatorConfig, generate
from headrace.sim.store_world import ShopRequest
from learner import modelcodec
from learner.aggregates import decode_hash
from learner.features import FeatureConfig, features
from learner.layout import ShardKeys
from learner.storestats import StoreStats
from stream.settings import StreamSettings
from tests.api.helpers import roc_auc
from tests.heldout import held_out, quality
from tests.learner.harness import (
    LearnerProcess,
    caught_up,
    end_offsets,
    send,
    shipped_env,
    store,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = SimulatorConfig(seed=3, count=60_000)


def test_shipped_defaults_learn_near_the_hidden_model_calibrated_and_report_honestly(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(CONFIG))
    send(topics, records)
    ends = end_offsets(topics)
    assert len(ends) == 3
    proc = LearnerProcess(shipped_env(topics), tmp_path / "learner.log")
    try:
        wait_until(lambda: caught_up(redis_client, topics, ends), 300, "the learner")
    finally:
        assert proc.stop() == 0
    state = store(redis_client, topics).load()
    assert state is not None
    model = modelcodec.loads(state.models["main"])
    keys = ShardKeys(topics.key_prefix, "main")
    at = records[-1].ts_ms / 1000
    config = FeatureConfig(**state.meta["feature_config"])
    stats = StoreStats.load(state.meta["store_stats"], config.half_life_s)

    def score(request: ShopRequest) -> np.ndarray:
        user = decode_hash(redis_client.hgetall(keys.user(request.user_id)))
        rows = [
            features(
                request.context,
                c.item,
                user,
                decode_hash(redis_client.hgetall(keys.item(c.item_id))),
                at,
                config,
                stats,
            )
            for c in request.candidates
        ]
        return np.array([float(model.predict_proba_one(x).get(True, 0.0)) for x in rows])

    result = quality(held_out(CONFIG, 1_000), score)
    # bench/quality.py, seed 3: measured in the docs (docs/learner.md).
    assert result.ratio >= 0.90, result
    assert 0.85 <= result.calibration <= 1.15, result

    shown = [r for r in records if r.type == "impression"]
    hidden = roc_auc([bool(r.will_purchase) for r in shown], [r.p_purchase or 0.0 for r in shown])
    reported = state.meta["variants"]["main"]["metrics"]
    for key in ("roc_auc", "rolling_roc_auc"):
        assert reported[key] is not None
        assert reported[key] <= hidden + 0.02, (key, reported[key], hidden)
