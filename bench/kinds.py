"""Held-out quality, cost and state size of model kinds on the simulator's stream.

    .venv/bin/python bench/kinds.py [--grid kinds|fm|tree] [--records 60000] [--seeds 1 2 3]

Starts its own Redis (a free 127.0.0.1 port, a temporary folder). For each seed, the
learner's own core (`learner.loop.Learner`: point-in-time features, the label join,
negatives when the window closes) turns the simulator's stream into the training
examples it would learn, in the order it would learn them. The shopper's and the
item's ids are added as `user_id` and `item_id` where `features()` does not give them.

Every model then learns the first 80 % of the examples as a variant does (predict,
score, learn: `learner.variant.Variant`), and predicts the last 20 % without learning
them. Printed per model, as the mean over the seeds:

- held-out ROC AUC (exact, ties counted as halves) and log loss; the hidden model's own
  AUC on the same examples is the ceiling (`ceiling`);
- `stuck`: the share of 1,000-example windows of the progressive phase whose exact AUC
  is 0.5 +- 0.01 (a model that ranks nothing), and `shown`: the same share of the
  rolling AUC the learner reports (River's ROCAUC with its ten thresholds, which cannot
  tell apart probabilities below 0.11; see docs/learner.md);
- `p=0`: the share of predictions that are exactly 0 (a log loss of 34.5 on a purchase);
- CPU µs per predict_proba_one + learn_one (progressive phase) and per predict_proba_one
  (held-out phase), and the size of the model's blob as the learner publishes it once
  it has learned the whole stream.
"""

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import redis
from pydantic import SecretStr
from river import compose, tree

from headrace.devstack import redis_local
from headrace.sim.simulator import SimulatorConfig, generate
from learner import modelcodec
from learner.aggregates import AggregateCache
from learner.features import Features
from learner.joins import Pending
from learner.layout import ShardKeys
from learner.loop import Learner
from learner.metrics import ProgressiveMetrics, log_loss
from learner.models import (
    ID_FEATURES,
    TREE_CATEGORICAL_SUFFIX,
    SelectNumbers,
    SelectStrings,
    build_model,
)
from learner.redisconn import connect
from learner.settings import LearnerSettings
from learner.variant import Variant
from stream.events import Impression, Rejection, parse_event
from stream.settings import StreamSettings
from tests.api.helpers import roc_auc
from tests.support import free_port

WINDOW = 1_000
HELD_OUT = 0.2

Factory = Callable[[], Any]


def kind(name: str, **params: Any) -> Factory:
    return lambda: build_model(name, params)


def former_tree(**params: Any) -> Factory:
    """The "tree" kind as it shipped before: one Hoeffding tree, naive Bayes adaptive."""
    settings = {
        "grace_period": 200,
        "max_depth": 8,
        "delta": 1e-7,
        "leaf_prediction": "nba",
        "binary_split": True,
        "max_size": 64.0,
        "memory_estimate_period": 100_000,
        **params,
    }

    def build() -> Any:
        typed = SelectNumbers() + (SelectStrings() | compose.Suffixer(TREE_CATEGORICAL_SUFFIX))
        return compose.Pipeline(typed, tree.HoeffdingTreeClassifier(**settings))

    return build


def adaptive_tree(**params: Any) -> Factory:
    """River's Hoeffding Adaptive Tree with the former tree's caps and "mc" leaves."""

    def build() -> Any:
        typed = SelectNumbers() + (SelectStrings() | compose.Suffixer(TREE_CATEGORICAL_SUFFIX))
        model = tree.HoeffdingAdaptiveTreeClassifier(
            grace_period=200, max_depth=8, leaf_prediction="mc", binary_split=True, seed=0
        )
        return compose.Pipeline(compose.Discard(*ID_FEATURES), typed, model)

    return build


GRIDS: dict[str, list[tuple[str, Factory]]] = {
    "kinds": [
        ("logreg", kind("logreg")),
        ("tree as it shipped before", former_tree()),
        ("tree", kind("tree")),
        ("fm", kind("fm")),
    ],
    "fm": [
        ("logreg (reference)", kind("logreg")),
        ("fm", kind("fm")),
        ("fm latent_lr=0.002", kind("fm", latent_lr=0.002)),
        ("fm latent_lr=0.01", kind("fm", latent_lr=0.01)),
        ("fm latent_lr=0.02", kind("fm", latent_lr=0.02)),
        ("fm latent_lr=0.05", kind("fm", latent_lr=0.05)),
        ("fm lr=0.01 latent_lr=0.01", kind("fm", lr=0.01, latent_lr=0.01)),
        ("fm n_factors=8", kind("fm", n_factors=8)),
        ("fm n_factors=16", kind("fm", n_factors=16)),
        ("fm init_std=0.01", kind("fm", init_std=0.01)),
        ("fm init_std=0.1", kind("fm", init_std=0.1)),
        ("fm l2_latent=0.01", kind("fm", l2_latent=0.01)),
        ("fm buckets=0 (no hashing)", kind("fm", buckets=0)),
    ],
    "tree": [
        ("former tree (nba)", former_tree()),
        ("former tree, mc", former_tree(leaf_prediction="mc")),
        ("former tree, nb", former_tree(leaf_prediction="nb")),
        (
            "former tree, mc, hellinger",
            former_tree(leaf_prediction="mc", split_criterion="hellinger"),
        ),
        ("former tree, mc, delta=1e-3", former_tree(leaf_prediction="mc", delta=1e-3)),
        ("former tree, mc, max_depth=5", former_tree(leaf_prediction="mc", max_depth=5)),
        ("hoeffding adaptive tree, mc", adaptive_tree()),
        ("tree (forest of 3, depth 8)", kind("tree")),
        ("tree n_models=5 max_depth=6", kind("tree", n_models=5, max_depth=6)),
    ],
}


@dataclass
class Stream:
    """One seed's training examples in learning order, with the hidden P(purchase)."""

    examples: list[tuple[Features, bool]] = field(default_factory=list)
    hidden: list[float] = field(default_factory=list)


class _Examples(Learner):
    """The learner's core, noting each example with its final label (and the shopper's and
    the item's ids) instead of scoring it."""

    examples: list[tuple[Features, bool]]
    released: list[str]

    def _close(self, entry: Pending) -> None:
        x = entry.x()
        x.setdefault("user_id", entry.user_id)
        x.setdefault("item_id", entry.item_id)
        self.examples.append((x, entry.closed == "positive"))
        self.released.append(entry.impression_id)

    def _labeled(self, x: Mapping[str, float | str], y: bool, ts: float) -> None:
        return


def learner_stream(config: SimulatorConfig, client: redis.Redis) -> Stream:
    """The examples the learner's core makes of `config`'s stream, in learning order."""
    settings = LearnerSettings(join_window_s=300.0, metrics_port=0)
    keys = ShardKeys(f"quality-{config.seed}", "main")
    core = _Examples(settings, keys, AggregateCache(client))
    core.examples, core.released = [], []
    out = Stream()
    hidden: dict[str, float] = {}
    records = list(generate(config))
    for start in range(0, len(records), 2_000):
        batch = records[start : start + 2_000]
        events = [parse_event(r.value) for r in batch]
        core.prefetch(e for e in events if not isinstance(e, Rejection))
        for offset, (record_, event) in enumerate(zip(batch, events, strict=True), start):
            if isinstance(event, Rejection):
                continue
            if isinstance(event, Impression) and record_.p_purchase is not None:
                hidden[event.impression_id] = record_.p_purchase
            core.process(event, 0, offset)
    out.examples = core.examples
    out.hidden = [hidden[i] for i in core.released]
    for key in client.scan_iter(match=f"{keys.prefix}:*", count=1_000):
        client.delete(key)
    return out


@dataclass(frozen=True)
class Result:
    auc: float
    ceiling: float
    log_loss: float
    stuck: float
    learner_stuck: float
    zeros: float
    learn_us: float
    predict_us: float
    blob_bytes: int


def evaluate(model: Any, stream: Stream) -> Result:
    """`model` learns the first part of `stream` progressively and predicts the rest."""
    examples = stream.examples
    split = int(len(examples) * (1 - HELD_OUT))
    variant = Variant("v", "bench", model, ProgressiveMetrics(WINDOW))
    scores: list[float] = []
    windows: list[float] = []
    reported: list[float] = []
    learning = 0.0
    for i, (x, y) in enumerate(examples[:split], 1):
        began = time.process_time()
        scores.append(variant.learn(x, y))
        variant.score(y, scores[-1])
        learning += time.process_time() - began
        if i % WINDOW == 0:
            window = examples[i - WINDOW : i]
            windows.append(roc_auc([y for _, y in window], scores[-WINDOW:]))
            shown = variant.metrics.report()["rolling_roc_auc"]
            if shown is not None:
                reported.append(float(shown))
    held = examples[split:]
    began = time.process_time()
    predicted = [variant.predict(x) for x, _ in held]
    predict_us = (time.process_time() - began) / len(held) * 1e6
    labels = [y for _, y in held]
    for x, y in held:
        variant.learn(x, y)
    return Result(
        auc=roc_auc(labels, predicted),
        ceiling=roc_auc(labels, stream.hidden[split:]),
        log_loss=float(np.mean([log_loss(y, p) for y, p in zip(labels, predicted, strict=True)])),
        stuck=_share_near_half(windows),
        learner_stuck=_share_near_half(reported),
        zeros=float(np.mean([p == 0.0 for p in scores + predicted])),
        learn_us=learning / split * 1e6,
        predict_us=predict_us,
        blob_bytes=len(modelcodec.dumps(variant.model)),
    )


def _share_near_half(aucs: list[float]) -> float:
    return float(np.mean([abs(a - 0.5) <= 0.01 for a in aucs]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", choices=sorted(GRIDS), default="kinds")
    parser.add_argument("--records", type=int, default=60_000, help="simulator records per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument(
        "--drift-at", type=int, default=None, help="the hidden model changes after N records"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    # The local Redis requires a password: one of the bench's own.
    stream_settings = StreamSettings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_password=SecretStr(secrets.token_urlsafe(32)),
        stack_dir=str(tmp),
        key_prefix="bench",
    )
    redis_local.start(stream_settings)
    try:
        client: redis.Redis = connect(stream_settings)
        streams = []
        for seed in args.seeds:
            config = SimulatorConfig(
                seed=seed,
                count=args.records,
                n_users=args.users,
                n_items=args.items,
                drift_at=args.drift_at,
            )
            streams.append(learner_stream(config, client))
        client.close()
    finally:
        redis_local.stop(stream_settings)
    sizes = ", ".join(f"{len(s.examples):,}" for s in streams)
    drift = f", drift after {args.drift_at:,}" if args.drift_at is not None else ""
    print(f"{args.records:,} records per seed{drift}, seeds {args.seeds}: examples {sizes}")
    print(f"held out: the last {HELD_OUT:.0%}; means over the seeds (per seed in brackets)\n")
    header = (
        f"{'model':<30} {'auc':>6} {'ceiling':>7} {'logloss':>7} {'stuck':>6} {'shown':>6} "
        f"{'p=0':>6} {'µs/learn':>8} {'µs/pred':>7} {'blob kB':>8}  per seed auc"
    )
    print(header)
    for label, factory in GRIDS[args.grid]:
        results = [evaluate(factory(), s) for s in streams]

        def mean(name: str, found: list[Result] = results) -> float:
            return statistics.fmean(getattr(r, name) for r in found)

        per_seed = " ".join(f"{r.auc:.3f}" for r in results)
        print(
            f"{label:<30} {mean('auc'):>6.3f} {mean('ceiling'):>7.3f} {mean('log_loss'):>7.4f} "
            f"{mean('stuck'):>6.0%} {mean('learner_stuck'):>6.0%} {mean('zeros'):>6.1%} "
            f"{mean('learn_us'):>8.0f} "
            f"{mean('predict_us'):>7.0f} {mean('blob_bytes') / 1000:>8.1f}  [{per_seed}]",
            flush=True,
        )


if __name__ == "__main__":
    main()
