"""Learning quality: what the learner learns from the simulator, against the best possible.

    .venv/bin/python bench/quality.py [--seed 7] [--count 60000] [--drift-at 40000]

Needs a Redis (the local stack: `headrace stack up`, or HEADRACE_REDIS_URL); the
aggregates live there as they do in production, under a key prefix of their own that
is deleted afterwards.

The simulator's stream goes through the learner's own core (`learner.loop.Learner`, the
code `headrace learn` runs for every record: fraud guard, features, join, delayed-feedback
method, models, progressive metrics), once per delayed-feedback method, with the shipped
settings otherwise. Then 1,000 storefront requests it never saw (`tests/heldout.py`) are
scored. For each method and model kind it prints, side by side:

- the held-out ROC AUC (expected under the hidden probabilities) and its ratio to the
  hidden model's own on the same requests, the limit;
- calibration: mean predicted probability over the mean hidden probability;
- the progressive AUC the learner reports (what /models and the dashboard show: since the
  start, and over its rolling window) and how far the rolling one is from
  the held-out one;
- where the rolling AUC differs from the held-out one, why: the same window's served
  predictions ranked by their expected AUC under the hidden probabilities (no draw
  noise), and the hidden model's own AUC on the window, so that the difference splits
  into the draws of the window's labels and what the window scores (predictions served
  up to a window earlier, on the stream's pages at every position) against the held-out
  requests (the final model, candidates at the top of the page);
- with --drift-at: events after the drift until the held-out AUC on the new regime
  first passes 0.5 (the new pattern moves the predictions) and until its ratio is back to
  90 % of the ratio before the drift (recovery), from checkpoints every --every records.

On the same examples with every label known at once (no delay at all), as anchors: the
shipped model outside the learner (`build_model("logreg")`, learn_one on each impression's
features with its true label: what the delayed feedback costs), River's own logistic
pipeline with AdaGrad (the shipped default before the bayes optimizer), and Vowpal Wabbit
(`pip install vowpalwabbit`; skipped when absent) on raw fields with the interactions of
MEASURED.md (`-q uc -q un -q ui`).
"""

import argparse
import bisect
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.quality_baselines import baseline_rows  # noqa: E402
from bench.quality_report import Row, Score, Window, print_report, scored_row  # noqa: E402
from bench.uncertainty import delong_error, draw_error, exact_auc  # noqa: E402
from guards.drift import PERFORMANCE_SIGNALS  # noqa: E402
from guards.settings import GuardSettings  # noqa: E402
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate  # noqa: E402
from headrace.sim.store_world import ShopRequest  # noqa: E402
from learner.aggregates import AggregateCache  # noqa: E402
from learner.features import features  # noqa: E402
from learner.feedback import METHODS  # noqa: E402
from learner.layout import ShardKeys  # noqa: E402
from learner.loop import Learner  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from learner.settings import LearnerSettings  # noqa: E402
from stream.events import Rejection, parse_event  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.heldout import HeldOut, Quality, expected_auc, held_out, quality  # noqa: E402


def rolling_window(learner: Learner, kind: str, impressions: list[SimRecord]) -> Window | None:
    """The window's examples matched with their impressions.

    On one partition in time order, impressions close in impression-time order, so the
    window holds the impressions just before the `learned`-th; `agree` checks it.
    """
    ys, ps = learner.variants[kind].metrics.window_scored()
    end = learner.counts["learned"]
    if not len(ys) or end > len(impressions) or end < len(ys):
        return None
    matched = impressions[end - len(ys) : end]
    p = np.array([r.p_purchase or 0.0 for r in matched], dtype=np.float64)
    bought = np.array([bool(r.will_purchase) for r in matched])
    return Window(
        expected_auc(p, ps),
        expected_auc(p, p),
        float(np.mean(bought == ys)),
        int(ys.sum()),
        draw_error(p, ps),
        delong_error(ys, ps),
        exact_auc(ys, p),
    )


def learner_run(
    client: redis.Redis,
    records: list[SimRecord],
    method: str,
    kinds: list[str],
    window_s: float,
    checkpoints: Callable[[int], HeldOut | None],
) -> tuple[Learner, dict[str, list[tuple[int, Quality]]]]:
    """The stream through the learner's core on one partition; held-out curves per kind."""
    prefix = f"bench-quality-{uuid.uuid4().hex[:8]}"
    keys = ShardKeys(prefix, "main")
    settings = LearnerSettings(
        metrics_port=0,
        variants={kind: kind for kind in kinds},
        delayed_feedback=method,  # type: ignore[arg-type]
        join_window_s=window_s,
    )
    # Guards on, as shipped: a drift alert makes the model re-learn faster.
    learner = Learner(settings, keys, AggregateCache(client), GuardSettings())
    curves: dict[str, list[tuple[int, Quality]]] = {kind: [] for kind in kinds}
    try:
        for start in range(0, len(records), 500):
            chunk = records[start : start + 500]
            parsed = [parse_event(r.value) for r in chunk]
            learner.prefetch(e for e in parsed if not isinstance(e, Rejection))
            for offset, event in enumerate(parsed, start):
                if isinstance(event, Rejection):
                    learner.skip(0, offset)
                else:
                    learner.process(event, 0, offset)
            data = checkpoints(start + len(chunk))
            if data is not None:
                at = records[start + len(chunk) - 1].ts_ms / 1000
                for kind in kinds:
                    curves[kind].append(
                        (start + len(chunk), quality(data, learner_scorer(learner, kind, at)))
                    )
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    return learner, curves


def adaptations(learner: Learner, records: list[SimRecord]) -> str:
    """The drift alerts that made the model take full-size steps again, and where: on a
    stream without a drift each is a false alarm, and the model's level wanders after it."""
    times = [r.ts_ms / 1000 for r in records]
    alerts = [
        f"{a.detector} {a.signal} after {bisect.bisect_right(times, a.ts):,} records"
        for a in learner.alerts
        if a.ends is None and a.signal in PERFORMANCE_SIGNALS
    ]
    adapted = learner.counts["adapted"]
    return f"adapted to a drift {adapted} times" + (f" ({'; '.join(alerts)})" if alerts else "")


def learner_scorer(learner: Learner, kind: str, at: float) -> Score:
    """The variant's P(purchase) for a request's candidates, from the learner's aggregates
    as the API would read them once published."""
    variant, cache, keys = learner.variants[kind], learner.cache, learner.keys
    config, store = learner.feature_config, learner.store

    def score(request: ShopRequest) -> np.ndarray:
        user = cache.get(keys.user(request.user_id))
        return np.array(
            [
                variant.predict(
                    features(
                        request.context,
                        c.item,
                        user,
                        cache.get(keys.item(c.item_id)),
                        at,
                        config,
                        store,
                    )
                )
                for c in request.candidates
            ]
        )

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--n-users", type=int, default=2_000)
    parser.add_argument("--n-items", type=int, default=500)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--kinds", default="logreg")
    parser.add_argument("--window", type=float, default=LearnerSettings().join_window_s)
    parser.add_argument("--drift-at", type=int, default=None)
    parser.add_argument("--every", type=int, default=5_000, help="records between checkpoints")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument(
        "--spans",
        default="2500,5000,10000",
        help="the rolling AUC over these last examples of the window too (at most "
        "HEADRACE_METRICS_WINDOW)",
    )
    args = parser.parse_args()
    spans = [int(n) for n in args.spans.split(",")]

    config = SimulatorConfig(
        seed=args.seed,
        count=args.count,
        n_users=args.n_users,
        n_items=args.n_items,
        drift_at=args.drift_at,
    )
    records = list(generate(config))
    drifted = args.drift_at is not None
    final = held_out(config, args.requests, drifted=drifted)
    before = held_out(config, max(200, args.requests // 4), seed=17) if drifted else None
    after = held_out(config, max(200, args.requests // 4), seed=17, drifted=True)
    early = held_out(config, max(200, args.requests // 4), seed=17)
    impressions = sum(r.type == "impression" for r in records)
    bought = sum(bool(r.will_purchase) for r in records if r.type == "impression")
    print(
        f"stream: seed {args.seed}, {len(records):,} records, {impressions:,} impressions, "
        f"{bought / impressions:.1%} bought; window {args.window:.0f} s; held-out: "
        f"{args.requests:,} requests of 10 candidates"
        + (f"; drift after {args.drift_at:,} records" if drifted else "")
    )

    def checkpoints(n: int) -> HeldOut | None:
        if n % args.every and n != len(records):
            return None
        if before is None:
            return final if n == len(records) else early
        return after if n > args.drift_at else before

    client = connect(StreamSettings())
    shown = [r for r in records if r.type == "impression"]
    rows: list[Row] = []
    kinds = args.kinds.split(",")
    for method in args.methods.split(","):
        started = time.perf_counter()
        learner, curves = learner_run(client, records, method, kinds, args.window, checkpoints)
        elapsed = time.perf_counter() - started
        end = records[-1].ts_ms / 1000
        for kind in kinds:
            report = learner.variants[kind].metrics.report()
            row = scored_row(
                f"headrace {kind}, {method}", final, learner_scorer(learner, kind, end)
            )
            row.reported = report.get("roc_auc")
            row.reported_rolling = report.get("rolling_roc_auc")
            row.curve = curves[kind]
            row.learned = learner.counts["learned"]
            row.window = rolling_window(learner, kind, shown)
            row.scored = learner.variants[kind].metrics.window_scored()
            rows.append(row)
        print(f"  {method}: {elapsed:.1f} s, counts {dict(learner.joins.counts)}")
        print(f"  {method}: {adaptations(learner, records)}")
    if not args.no_baselines:
        rows.extend(baseline_rows(records, final))
    print_report(rows, len(final.requests), spans, args.drift_at)


if __name__ == "__main__":
    main()
