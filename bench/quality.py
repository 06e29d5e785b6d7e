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

On the same examples with every label known at once (no delay at all), as anchors:
River's bare logistic pipeline (`build_model("logreg")`, learn_one on each impression's
features with its true label), and Vowpal Wabbit (`pip install vowpalwabbit`; skipped
when absent) on raw fields with the interactions of MEASURED.md (`-q uc -q un -q ui`).
"""

import argparse
import bisect
import functools
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.uncertainty import (  # noqa: E402
    HeldOutErrors,
    delong_error,
    draw_error,
    exact_auc,
    held_out_errors,
)
from guards.drift import PERFORMANCE_SIGNALS  # noqa: E402
from guards.settings import GuardSettings  # noqa: E402
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate  # noqa: E402
from headrace.sim.store_world import ShopRequest  # noqa: E402
from learner.aggregates import AggregateCache  # noqa: E402
from learner.features import (  # noqa: E402
    FeatureConfig,
    Features,
    features,
    observe_impression,
    observe_outcome,
)
from learner.feedback import METHODS  # noqa: E402
from learner.layout import ShardKeys  # noqa: E402
from learner.loop import Learner  # noqa: E402
from learner.models import build_model  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from learner.settings import LearnerSettings  # noqa: E402
from learner.storestats import StoreStats  # noqa: E402
from stream.events import Impression, Item, Rejection, parse_event  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.heldout import HeldOut, Quality, expected_auc, held_out, quality  # noqa: E402

Score = Callable[[ShopRequest], np.ndarray]


@dataclass(frozen=True)
class Window:
    """The rolling window the learner reports, set against the hidden probabilities."""

    expected: float
    """Expected ROC AUC of the predictions served for the window's examples."""
    hidden: float
    """The hidden model's own expected ROC AUC on the same examples."""
    agree: float
    """Share of the window's labels equal to the simulator's outcomes of the impressions
    it is matched with: 1.0 (or within a few late purchases of it) when the match is right."""
    positives: int
    """Purchases among the window's labels: what its AUC's precision rests on."""
    draw_se: float
    """Standard deviation of the window's AUC over labels drawn again from the hidden
    probabilities, for the same served predictions: the rolling AUC's own noise."""
    delong_se: float
    """DeLong's estimate of the same from the window's labels and scores alone."""


@dataclass
class Row:
    name: str
    final: Quality
    reported: float | None = None
    reported_rolling: float | None = None
    curve: list[tuple[int, Quality]] = field(default_factory=list)
    learned: int = 0
    window: Window | None = None
    errors: HeldOutErrors | None = None
    scored: tuple[np.ndarray, np.ndarray] | None = None
    """The rolling window's labels and served predictions, oldest first."""


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
    )


def recorded(score: Score) -> tuple[Score, list[np.ndarray]]:
    """`score`, keeping what it returns in order: the held-out scores for the errors."""
    kept: list[np.ndarray] = []

    def keep(request: ShopRequest) -> np.ndarray:
        kept.append(score(request))
        return kept[-1]

    return keep, kept


def scored_row(name: str, data: HeldOut, score: Score) -> "Row":
    """A row of `score`'s held-out quality, with its bootstrap standard errors."""
    keep, kept = recorded(score)
    row = Row(name, quality(data, keep))
    row.errors = held_out_errors(data.p, np.concatenate(kept), len(data.requests[0].candidates))
    return row


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


Aggregates = dict[str, dict[str, float]]


def replay(
    records: Iterable[SimRecord], config: FeatureConfig
) -> tuple[list[tuple[Features, bool]], Aggregates, Aggregates, StoreStats]:
    """Each impression's features (the learner's, point in time) with its true label, and
    the users' and items' aggregates and the store-wide counts at the end: what the learner
    computes, without it."""
    store = StoreStats(config.half_life_s)
    users: Aggregates = {}
    items: Aggregates = {}
    shown: dict[str, Item] = {}
    out: list[tuple[Features, bool]] = []
    for record in records:
        event = parse_event(record.value)
        if isinstance(event, Rejection) or event.type == "labeled":
            continue
        at = event.ts.timestamp()
        user = users.setdefault(event.user_id, {})
        item_aggs = items.setdefault(event.item_id, {})
        if isinstance(event, Impression):
            x = features(event.context, event.item, user, item_aggs, at, config, store)
            out.append((x, bool(record.will_purchase)))
            observe_impression(user, item_aggs, event.item, at, config, event.context)
            store.observe(event.context.query, event.item.category, float(x["log_price"]), at)
            shown[event.impression_id] = event.item
        else:
            item = shown.get(event.impression_id or "")
            observe_outcome(user, item_aggs, event.type, item, at, config)
    return out, users, items, store


def river_bare(data: list[tuple[Features, bool]]) -> Any:
    model = build_model("logreg")
    for x, y in data:
        model.learn_one(x, y)
    return model


def vw_line(request_user: str, item_id: str, item: Item, ctx: Any, label: bool | None) -> str:
    def clean(text: str) -> str:
        return text.replace(" ", "_").replace("|", "_").replace(":", "_") or "none"

    words = " ".join(clean(w) for w in ctx.query.split()) or "none"
    head = "" if label is None else ("1 " if label else "-1 ")
    return (
        f"{head}|u {clean(request_user)} |i {clean(item_id)} c_{clean(item.category)} "
        f"b_{clean(item.brand or 'none')} |c {words} d_{ctx.device} p_{ctx.page} "
        f"|n position:{ctx.position} log_price:{math.log1p(item.price):.6f}"
    )


def vowpal(records: list[SimRecord], data: HeldOut) -> "Row | None":
    try:
        import vowpalwabbit
    except ImportError:
        return None
    vw = vowpalwabbit.Workspace(
        "--loss_function logistic --link logistic -q uc -q un -q ui --power_t 0.3 -l 0.3 "
        "-b 22 --quiet"
    )
    for record in records:
        event = parse_event(record.value)
        if isinstance(event, Impression):
            vw.learn(
                vw_line(
                    event.user_id,
                    event.item_id,
                    event.item,
                    event.context,
                    bool(record.will_purchase),
                )
            )

    def score(request: ShopRequest) -> np.ndarray:
        return np.array(
            [
                vw.predict(vw_line(request.user_id, c.item_id, c.item, request.context, None))
                for c in request.candidates
            ]
        )

    result = scored_row("Vowpal Wabbit -q uc un ui, labels at once", data, score)
    vw.finish()
    return result


def _moved(q: Quality) -> bool:
    return q.auc > 0.5


def _recovered(target: float, q: Quality) -> bool:
    return q.ratio >= target


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def events_until(
    curve: list[tuple[int, Quality]], drift_at: int, test: Callable[[Quality], bool]
) -> str:
    for n, q in curve:
        if n > drift_at and test(q):
            return f"{n - drift_at:,}"
    return "never"


def print_errors(rows: list[Row], requests: int) -> None:
    """The standard errors of the first table's figures: is a gap noise?"""
    resamples = next((r.errors.resamples for r in rows if r.errors is not None), 0)
    print()
    print(
        f"standard errors: held-out over {requests:,} requests (bootstrap of whole requests, "
        f"{resamples} resamples; the learner's own variation not included); rolling: DeLong's "
        "from the window's labels and scores, and [the spread of its AUC over labels drawn "
        "again from the hidden probabilities]; the gap's is both together"
    )
    print(
        "| model, method | held-out AUC | / hidden | calibration (95 % interval) "
        "| rolling (window's purchases) | rolling - held-out |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        e, w, q = row.errors, row.window, row.final
        if e is None:
            continue
        low, high = q.calibration - 1.96 * e.calibration, q.calibration + 1.96 * e.calibration
        rolling = gap = "-"
        if w is not None and row.reported_rolling is not None:
            rolling = (
                f"{row.reported_rolling:.3f} ± {w.delong_se:.3f} [{w.draw_se:.3f}] "
                f"({w.positives:,})"
            )
            gap_se = math.hypot(w.delong_se, e.auc)
            gap = f"{row.reported_rolling - q.auc:+.3f} ± {gap_se:.3f}"
        print(
            f"| {row.name} | {q.auc:.3f} ± {e.auc:.3f} | {q.ratio:.3f} ± {e.ratio:.3f} | "
            f"{q.calibration:.3f} ± {e.calibration:.3f} ({low:.2f} to {high:.2f}) | "
            f"{rolling} | {gap} |"
        )


def print_spans(rows: list[Row], spans: list[int]) -> None:
    """The exact AUC over the last `span` examples of the window, for shorter and longer
    windows than the shipped one (HEADRACE_METRICS_WINDOW sets how many the window keeps):
    a longer one draws less noise and scores older predictions."""
    print()
    print(
        "the rolling AUC over the last n examples of the window (DeLong's standard error; "
        "purchases): its gap to the held-out AUC"
    )
    print("| model, method | " + " | ".join(f"{n:,}" for n in spans) + " |")
    print("|---" * (len(spans) + 1) + "|")
    for row in rows:
        if row.scored is None:
            continue
        ys, ps = row.scored
        cells = []
        for n in spans:
            if n > len(ys):
                cells.append("-")
                continue
            y, p = ys[-n:], ps[-n:]
            auc = exact_auc(y, p)
            cells.append(
                f"{auc - row.final.auc:+.3f} ± {delong_error(y, p):.3f} ({int(y.sum()):,})"
            )
        print(f"| {row.name} | " + " | ".join(cells) + " |")


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
        data, users, items, stats = replay(records, FeatureConfig())
        model = river_bare(data)
        end = records[-1].ts_ms / 1000

        def river_score(request: ShopRequest) -> np.ndarray:
            user = users.get(request.user_id, {})
            return np.array(
                [
                    float(
                        model.predict_proba_one(
                            features(
                                request.context,
                                c.item,
                                user,
                                items.get(c.item_id, {}),
                                end,
                                FeatureConfig(),
                                stats,
                            )
                        ).get(True, 0.0)
                    )
                    for c in request.candidates
                ]
            )

        rows.append(scored_row("River logreg, labels at once", final, river_score))
        rows[-1].learned = len(data)
        vw = vowpal(records, final)
        if vw is not None:
            rows.append(vw)
            rows[-1].learned = len(data)
    hidden = rows[0].final.hidden_auc
    print()
    print(f"hidden model's held-out AUC: {hidden:.3f}")
    header = (
        "| model, method | held-out AUC | / hidden | calibration | reported AUC (cum / rolling)"
        " | rolling - held-out | examples |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        gap = None if row.reported_rolling is None else row.reported_rolling - row.final.auc
        print(
            f"| {row.name} | {row.final.auc:.3f} | {row.final.ratio:.3f} | "
            f"{row.final.calibration:.2f} | {fmt(row.reported)} / {fmt(row.reported_rolling)} | "
            f"{fmt(gap)} | {row.learned:,} |"
        )
    print_errors(rows, len(final.requests))
    print_spans(rows, spans)
    print()
    print(
        "why the rolling AUC differs from the held-out one: draws = rolling - the same "
        "window's expected AUC; scored = that expected AUC - held-out (predictions served up "
        "to a window earlier, on pages at every position, against the final model at the "
        "top), split into ranking (the window's ratio to the hidden model's AUC against the "
        "held-out ratio, times the hidden AUC on the window) and traffic (the hidden model's "
        "own AUC on the window against on the held-out requests, times the held-out ratio)"
    )
    print(
        "| model, method | rolling | window expected (/ hidden on it) | held-out (/ hidden) "
        "| draws | scored | of it: ranking | of it: traffic | labels matched |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        w = row.window
        if w is None or row.reported_rolling is None:
            continue
        print(
            f"| {row.name} | {row.reported_rolling:.3f} | {w.expected:.3f} "
            f"({w.expected / w.hidden:.3f}) | {row.final.auc:.3f} ({row.final.ratio:.3f}) | "
            f"{row.reported_rolling - w.expected:+.3f} | {w.expected - row.final.auc:+.3f} | "
            f"{(w.expected / w.hidden - row.final.ratio) * w.hidden:+.3f} | "
            f"{row.final.ratio * (w.hidden - row.final.hidden_auc):+.3f} | {w.agree:.1%} |"
        )
    print()
    print("held-out ratio to the hidden model's AUC (calibration), by records learned:")
    for row in rows:
        if row.curve:
            points = ", ".join(
                f"{n // 1000}k {q.ratio:.3f} ({q.calibration:.2f})" for n, q in row.curve
            )
            print(f"  {row.name}: {points}")
    if drifted:
        print()
        print("| model, method | moves (AUC > 0.5 on the new regime) | recovers (90 % of ratio) |")
        print("|---|---|---|")
        for row in rows:
            if not row.curve:
                continue
            pre = [q.ratio for n, q in row.curve if n <= args.drift_at]
            target = 0.9 * pre[-1] if pre else 0.0
            moves = events_until(row.curve, args.drift_at, _moved)
            recovers = events_until(row.curve, args.drift_at, functools.partial(_recovered, target))
            print(f"| {row.name} | {moves} | {recovers} |")


if __name__ == "__main__":
    main()
