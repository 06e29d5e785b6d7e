"""Calibration over time: the served model (the average of the recent weights) against the
learning model's latest weights, on the same run.

    .venv/bin/python bench/calibration.py --seeds 2222,6802 [--count 60000] [--every 2500]

Needs a Redis, as bench/quality.py does. For each seed the simulator's stream goes through
the learner's core (`learner.loop.Learner`, shipped settings) once; from --start
records on, every --every records, the same 1,000 held-out requests (`tests/heldout.py`)
are scored by both models of the variant: what it serves (`Variant.predict`) and its
learning weights (the pipeline itself, what was served before the average). It prints
per seed:

- calibration (mean predicted over mean hidden probability) at each checkpoint, both
  models, and their mean and standard deviation over the checkpoints: a spread is the
  level wandering, a mean away from 1 a level the model holds;
- the stream's own calibration over the last 10,000 impressions (the predictions served
  when they happened against their hidden probabilities): the level where the model
  learns, not on the held-out requests;
- the held-out AUC ratio of both at the end (the ranking must not suffer);
- the served model's calibration by position at the end: the held-out requests shown at
  each position 0 to 9 (the hidden probabilities moved by the simulator's own position
  effect), and the stream's last 10,000 impressions at each position; a model whose
  position effect is too weak reads low at the top of the page, where the held-out
  requests are;
- the served model's reliability table at the end: candidates in bins of predicted
  probability, the mean predicted and the mean hidden probability of each bin.

Both sides score the same requests with the same aggregates at the same moments (checked:
the same number of candidates scored).
"""

import argparse
import itertools
import sys
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guards.settings import GuardSettings  # noqa: E402
from headrace.sim.simulator import SimulatorConfig, generate  # noqa: E402
from headrace.sim.store_world import _POSITION_COEF, ShopRequest  # noqa: E402
from learner.aggregates import AggregateCache  # noqa: E402
from learner.features import features  # noqa: E402
from learner.layout import ShardKeys  # noqa: E402
from learner.loop import Learner  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from learner.settings import LearnerSettings  # noqa: E402
from learner.variant import p_true_of  # noqa: E402
from stream.events import Impression, Rejection, parse_event  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.heldout import HeldOut, expected_auc, held_out  # noqa: E402

BINS = (0.0, 0.01, 0.02, 0.04, 0.08, 0.16, 1.0)


def scores(learner: Learner, data: HeldOut, at: float) -> tuple[np.ndarray, np.ndarray]:
    """(served, learning) P(purchase) of every held-out candidate, in order."""
    variant, cache, keys = learner.variants["main"], learner.cache, learner.keys
    served: list[float] = []
    latest: list[float] = []
    request: ShopRequest
    for request in data.requests:
        user = cache.get(keys.user(request.user_id))
        for c in request.candidates:
            x = features(
                request.context,
                c.item,
                user,
                cache.get(keys.item(c.item_id)),
                at,
                learner.feature_config,
                learner.store,
            )
            served.append(variant.predict(x))
            latest.append(p_true_of(variant.model.predict_proba_one(x)))
    return np.array(served), np.array(latest)


def by_position(learner: Learner, data: HeldOut, at: float, positions: range) -> list[float]:
    """The served model's calibration on the held-out requests shown at each position: the
    same candidates and aggregates, the context's position set, against the hidden
    probabilities moved by the simulator's own position effect."""
    variant, cache, keys = learner.variants["main"], learner.cache, learner.keys
    config, store = learner.feature_config, learner.store
    out: list[float] = []
    for position in positions:
        shift = _POSITION_COEF[data.drifted] * np.log1p(position)
        hidden = 1.0 / (1.0 + np.exp(-(np.log(data.p / (1.0 - data.p)) + shift)))
        served: list[float] = []
        for request in data.requests:
            user = cache.get(keys.user(request.user_id))
            context = request.context.model_copy(update={"position": position})
            for c in request.candidates:
                x = features(
                    context, c.item, user, cache.get(keys.item(c.item_id)), at, config, store
                )
                served.append(variant.predict(x))
        assert len(served) == len(hidden)  # every candidate at every position
        out.append(float(np.mean(served) / hidden.mean()))
    return out


def run_seed(seed: int, count: int, start: int, every: int, horizon: int) -> None:
    config = SimulatorConfig(seed=seed, count=count, n_users=2_000, n_items=500)
    records = list(generate(config))
    data = held_out(config, 1_000)
    hidden_auc = expected_auc(data.p, data.p)
    client = connect(StreamSettings())
    prefix = f"bench-calibration-{uuid.uuid4().hex[:8]}"
    settings = LearnerSettings(metrics_port=0, variants={"main": "logreg"}, served_average=horizon)
    learner = Learner(settings, ShardKeys(prefix, "main"), AggregateCache(client), GuardSettings())
    hidden_of: dict[str, float] = {}
    served_at: list[tuple[float, float, int]] = []
    points: list[tuple[int, float, float]] = []
    served = latest = np.empty(0)
    at = 0.0
    try:
        for first in range(0, len(records), 500):
            chunk = records[first : first + 500]
            parsed = [parse_event(r.value) for r in chunk]
            learner.prefetch(e for e in parsed if not isinstance(e, Rejection))
            for offset, (event, record) in enumerate(zip(parsed, chunk, strict=True), first):
                if isinstance(event, Rejection):
                    learner.skip(0, offset)
                    continue
                learner.process(event, 0, offset)
                if isinstance(event, Impression):
                    entry = learner.joins.item_of(event.impression_id, "", "")
                    if entry is not None:
                        hidden_of[event.impression_id] = record.p_purchase or 0.0
                        served_at.append(
                            (
                                entry.scores["main"],
                                record.p_purchase or 0.0,
                                event.context.position,
                            )
                        )
            n = first + len(chunk)
            if n >= start and (n % every == 0 or n == len(records)):
                served, latest = scores(learner, data, chunk[-1].ts_ms / 1000)
                assert len(served) == len(latest) == len(data.p)  # the same work on both sides
                points.append((n, served.mean() / data.p.mean(), latest.mean() / data.p.mean()))
                at = chunk[-1].ts_ms / 1000
        positions = range(10)
        held_by_position = by_position(learner, data, at, positions)
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    window = np.array(served_at[-10_000:])
    cal_s = np.array([s for _, s, _ in points])
    cal_l = np.array([v for _, _, v in points])
    ratio_s = expected_auc(data.p, served) / hidden_auc
    ratio_l = expected_auc(data.p, latest) / hidden_auc
    print(f"seed {seed} (hidden AUC {hidden_auc:.3f}), served average over {horizon:,} examples")
    print("| records | " + " | ".join(f"{n // 1000}k" for n, _, _ in points) + " | mean | sd |")
    print("|---" * (len(points) + 3) + "|")
    for name, cal in (("served", cal_s), ("latest weights", cal_l)):
        cells = " | ".join(f"{c:.2f}" for c in cal)
        print(f"| {name} | {cells} | {cal.mean():.3f} | {cal.std():.3f} |")
    print(
        f"end: held-out ratio served {ratio_s:.4f}, latest weights {ratio_l:.4f} "
        f"(served - latest {ratio_s - ratio_l:+.4f}); calibration served {cal_s[-1]:.3f}, "
        f"latest {cal_l[-1]:.3f}; the stream's last 10,000 impressions, served / hidden: "
        f"{window[:, 0].mean() / window[:, 1].mean():.3f}"
    )
    print(
        "served / hidden by position at the end: the held-out requests shown at each "
        "position; the stream's last 10,000 impressions at that position (their count)"
    )
    print("| position | " + " | ".join(str(k) for k in positions) + " | all |")
    print("|---" * (len(positions) + 2) + "|")
    print(
        "| held-out | "
        + " | ".join(f"{c:.3f}" for c in held_by_position)
        + f" | {np.mean(held_by_position):.3f} |"
    )
    stream_cells = []
    for k in positions:
        at_k = window[window[:, 2] == k]
        stream_cells.append(f"{at_k[:, 0].mean() / at_k[:, 1].mean():.3f} ({len(at_k):,})")
    print(
        f"| stream | {' | '.join(stream_cells)} | {window[:, 0].mean() / window[:, 1].mean():.3f} |"
    )
    recent = window[-2_000:]
    print(
        "the stream's last 2,000 impressions, served / hidden: "
        f"{recent[:, 0].mean() / recent[:, 1].mean():.3f}; hidden mean over the last 10,000 "
        f"by quarter: " + ", ".join(f"{q[:, 1].mean():.4f}" for q in np.array_split(window, 4))
    )
    print("reliability of the served model at the end (held-out candidates):")
    print("| predicted | candidates | mean predicted | mean hidden | ratio |")
    print("|---|---|---|---|---|")
    for low, high in itertools.pairwise(BINS):
        inside = (served >= low) & (served < high)
        if inside.any():
            p, h = served[inside].mean(), data.p[inside].mean()
            print(f"| {low:.2f}-{high:.2f} | {inside.sum():,} | {p:.4f} | {h:.4f} | {p / h:.2f} |")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="2222,6802,2468,7272")
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--start", type=int, default=40_000)
    parser.add_argument("--every", type=int, default=2_500)
    parser.add_argument("--horizon", type=int, default=LearnerSettings().served_average)
    args = parser.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        run_seed(seed, args.count, args.start, args.every, args.horizon)


if __name__ == "__main__":
    main()
