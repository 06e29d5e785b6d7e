"""The models bench/serve_cascade.py ranks with: learned from a simulator stream, or read back.

Learning 500,000 records with the logistic model and a factorization machine takes the
learner's core most of an hour on a shared box; the ranking and the timing that follow
take a minute. With `--cache DIR` what the learning leaves (each variant's model and the
aggregates of the held-out requests' shoppers and items, as the learner had them at the
end of the stream) is pickled to DIR, keyed by the seed, the stream's size and the
kinds, and read back by the next run with the same ones instead of learning again.

A cache is the learner's code of the day it was written: delete DIR after changing how
the learner learns or computes features (the file names say only what was asked for).
"""

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.quality import learner_run
from headrace.sim.simulator import SimulatorConfig, generate
from headrace.sim.store_world import ShopRequest
from learner.features import FeatureConfig, features
from learner.layout import ShardKeys
from learner.settings import LearnerSettings
from learner.storestats import StoreStats
from learner.variant import p_true_of

Score = Callable[[ShopRequest], np.ndarray]


@dataclass
class Trained:
    """Each kind's model after the stream, and the aggregates the API would read then."""

    models: dict[str, Any]
    aggregates: dict[str, dict[str, float]]
    """By Redis key: the shoppers and items of the requests the bench ranks."""
    keys: ShardKeys
    feature_config: FeatureConfig
    at: float
    """The stream's last timestamp (s): the time the requests are ranked at."""
    store: StoreStats
    """The store-wide counts the features read, at the stream's end."""
    source: str = field(default="learned", compare=False)

    def aggregate(self, key: str) -> dict[str, float]:
        # A copy: features() reads only, but a cached dict must not drift between uses.
        return dict(self.aggregates.get(key, {}))

    def scorer(self, kind: str) -> Score:
        """P(purchase) of a request's candidates, one `features()` row each, as the
        learner's `Variant.predict` gives it (bench/quality.py's `learner_scorer`)."""
        model, keys, config, at = self.models[kind], self.keys, self.feature_config, self.at
        store = self.store

        def score(request: ShopRequest) -> np.ndarray:
            user = self.aggregate(keys.user(request.user_id))
            rows = (
                features(
                    request.context,
                    c.item,
                    user,
                    self.aggregate(keys.item(c.item_id)),
                    at,
                    config,
                    store,
                )
                for c in request.candidates
            )
            return np.array([p_true_of(model.predict_proba_one(row)) for row in rows])

        return score


def trained_models(
    client: redis.Redis,
    config: SimulatorConfig,
    kinds: list[str],
    requests: Sequence[ShopRequest],
    cache: Path | None,
) -> Trained:
    """`kinds` learned from `config`'s stream by the learner's core, or read from `cache`."""
    path = cache / _file_name(config, kinds) if cache is not None else None
    if path is not None and path.exists():
        with path.open("rb") as f:
            found: Trained = pickle.load(f)  # a file this bench wrote
        found.source = f"read from {path}"
        return found
    records = list(generate(config))
    shipped = LearnerSettings()
    learner, _ = learner_run(
        client, records, shipped.delayed_feedback, kinds, shipped.join_window_s, lambda n: None
    )
    keys = learner.keys
    wanted = {keys.user(r.user_id) for r in requests}
    wanted |= {keys.item(c.item_id) for r in requests for c in r.candidates}
    trained = Trained(
        models={kind: learner.variants[kind].model for kind in kinds},
        aggregates={key: dict(learner.cache.get(key)) for key in sorted(wanted)},
        keys=keys,
        feature_config=learner.feature_config,
        at=records[-1].ts_ms / 1000,
        store=learner.store,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as f:
            pickle.dump(trained, f, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)  # a run killed mid-write leaves no half a cache
        trained.source = f"learned, cached in {path}"
    return trained


def _file_name(config: SimulatorConfig, kinds: list[str]) -> str:
    named = "+".join(kind.replace(":", "-").replace("/", "-") for kind in kinds)
    return f"v2-seed{config.seed}-{config.count}-u{config.n_users}-i{config.n_items}-{named}.pickle"
