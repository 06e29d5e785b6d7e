"""Delayed feedback: what the learner learns, when and how much, against River and the papers.

Each method runs through the learner's own core on a simulator stream (aggregates in the
real Redis) and is replayed with River's plain pipeline on the features the learner
computed, as the method prescribes. Same weights in the same order give the same model,
bit for bit.
"""

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from river import evaluate, metrics

import learner.features
import learner.loop
from headrace.sim.simulator import SimulatorConfig, generate
from learner.aggregates import AggregateCache
from learner.bayes import WIDEN
from learner.features import Features
from learner.joins import Pending
from learner.layout import ShardKeys
from learner.loop import Learner
from learner.metrics import ProgressiveMetrics
from learner.models import build_model, logreg_parts
from learner.settings import LearnerSettings
from learner.variant import Variant
from stream.events import (
    Click,
    Context,
    Event,
    Impression,
    Item,
    Purchase,
    Rejection,
    parse_event,
)
from stream.settings import StreamSettings
from tests.learner.test_models import synthetic_stream

pytestmark = pytest.mark.integration

WINDOW_S = 1200.0
"""Long enough that no purchase of the simulator comes after it (a correction River's
evaluator would not make)."""


class Timed(dict[str, Any]):
    """An example's features with the moment of its impression, for River's evaluator."""

    ts: float


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[float, Features]]]:
    """Every impression's features as the learner computed them, in order."""
    seen: list[tuple[float, Features]] = []
    compute = learner.features.features

    def recording(*args: Any) -> Features:
        x = compute(*args)
        seen.append((args[4], x))
        return x

    monkeypatch.setattr(learner.loop, "features", recording)
    yield seen


class Recording(Learner):
    """The learner, noting each impression's final label as its window closes."""

    closed: dict[int, bool]

    def _close(self, entry: Pending) -> None:
        self.closed[entry.seq - 1] = entry.closed == "positive"
        super()._close(entry)


def run(
    client: redis.Redis,
    settings: StreamSettings,
    method: str,
    count: int,
    elapsed_s: float = 300.0,
) -> Recording:
    core = Recording(
        # The published methods exactly, with the model's own latest estimate as f: the
        # served average of the weights (learner/averaging.py) has its own test.
        LearnerSettings(
            metrics_port=0,
            delayed_feedback=method,  # type: ignore[arg-type]
            join_window_s=WINDOW_S,
            elapsed_s=elapsed_s,
            served_average=0,
        ),
        ShardKeys(settings.key_prefix, "main"),
        AggregateCache(client),
    )
    core.closed = {}
    config = SimulatorConfig(seed=5, count=count, n_users=150, n_items=80)
    for offset, record in enumerate(generate(config)):
        event = parse_event(record.value)
        assert not isinstance(event, Rejection)
        core.prefetch([event])
        core.process(event, 0, offset)
    return core


def weights(model: Any) -> tuple[dict[str, float], float]:
    parts = logreg_parts(model)
    assert parts is not None
    return dict(parts[1].weights), parts[1].intercept


def test_window_method_is_rivers_delayed_progressive_validation(
    redis_client: redis.Redis, settings: StreamSettings, captured: list[tuple[float, Features]]
) -> None:
    """Predict at the impression, learn and score when the window closes: River's
    `progressive_val_score(moment=..., delay=...)` does exactly that."""
    core = run(redis_client, settings, "window", 20_000)
    assert "late_outcome" not in core.joins.counts
    joins = core.joins.counts
    closed = joins["positive"] + joins["negative_window"]
    assert closed > 1_000 and joins["positive"] > 20
    # The examples whose window closed, with the labels the join gave them.
    labels = core.closed
    dataset = []
    for index, (ts, x) in enumerate(captured):
        if index in labels:
            timed = Timed(x)
            timed.ts = ts
            dataset.append((timed, labels[index]))
    assert len(dataset) == closed
    river_model = build_model("logreg")
    loss = evaluate.progressive_val_score(
        dataset, river_model, metrics.LogLoss(), moment=lambda x: x.ts, delay=WINDOW_S
    )
    variant = core.variants["main"]
    assert variant.metrics.report()["log_loss"] == pytest.approx(loss.get(), rel=1e-12)
    assert weights(variant.model) == weights(river_model)


def test_fake_negatives_are_weighted_as_ktena_et_al(
    redis_client: redis.Redis, settings: StreamSettings, captured: list[tuple[float, Features]]
) -> None:
    """Every impression at once as a negative weighted (1 - f)(1 + f), and again as a
    positive weighted 1 + f when its purchase comes, f the model's estimate at the
    impression: replayed with River's pipeline, the same model."""
    count = 20_000
    core = run(redis_client, settings, "fnw", count)
    config = SimulatorConfig(seed=5, count=count, n_users=150, n_items=80)
    reference = build_model("logreg")
    features_of: dict[str, tuple[Features, float]] = {}
    shown = iter(captured)
    purchases = 0
    for record in generate(config):
        event = parse_event(record.value)
        if isinstance(event, Impression):
            _, x = next(shown)
            said = reference.predict_proba_one(x)
            f = float(said.get(True, 0.0)) if said else 0.5
            reference.learn_one(x, False, w=(1 - f) * (1 + f))
            features_of[event.impression_id] = (x, f)
        elif isinstance(event, Purchase) and event.impression_id in features_of:
            x, f = features_of.pop(event.impression_id)
            reference.learn_one(x, True, w=1 + f)
            purchases += 1
    assert purchases > 20
    assert weights(core.variants["main"].model) == weights(reference)


@dataclass
class Held:
    """An impression the replay holds until its elapsed time."""

    ts: float
    x: Features
    f: float
    bought_at: float | None = None
    sampled: bool = False


def test_elapsed_time_sampling_is_weighted_as_yang_et_al(
    redis_client: redis.Redis, settings: StreamSettings, captured: list[tuple[float, Features]]
) -> None:
    """ES-DFM: every impression once, `elapsed_s` after it by the watermark, with the label
    known then (a purchase within that time), weighted 1 + f_dp if bought and
    (1 + f_dp)(1 - f)/(1 - f + f_dp) if not; a purchase after that time again as a
    positive weighted 1 + f_dp; f_dp = f * a, a the share of purchases so far that came
    after the elapsed time (one of each counted in advance). Replayed with River's
    pipeline, the same model."""
    count, elapsed = 20_000, 60.0
    core = run(redis_client, settings, "esdfm", count, elapsed_s=elapsed)
    config = SimulatorConfig(seed=5, count=count, n_users=150, n_items=80)
    reference = build_model("logreg")
    held: dict[str, Held] = {}
    due: list[tuple[float, int, str]] = []
    within = after = 0
    watermark = -math.inf
    shown = iter(captured)

    def learn(x: Features, y: bool, f: float) -> None:
        late = f * ((after + 1) / (within + after + 2))
        w = 1 + late if y else (1 + late) * (1 - f) / (1 - f + late)
        reference.learn_one(x, y, w=w)

    for seq, record in enumerate(generate(config)):
        event = parse_event(record.value)
        assert not isinstance(event, Rejection)
        t = event.ts.timestamp()
        watermark = max(watermark, t)
        while due and due[0][0] <= watermark - elapsed:
            ts, _, impression_id = heapq.heappop(due)
            entry = held[impression_id]
            entry.sampled = True
            bought = entry.bought_at is not None and entry.bought_at - ts <= elapsed
            learn(entry.x, bought, entry.f)
        if isinstance(event, Impression):
            _, x = next(shown)
            said = reference.predict_proba_one(x)
            f = float(said.get(True, 0.0)) if said else 0.5
            held[event.impression_id] = Held(t, x, f)
            heapq.heappush(due, (t, seq, event.impression_id))
        elif isinstance(event, Purchase) and event.impression_id in held:
            entry = held[event.impression_id]
            if entry.bought_at is not None:
                continue  # a repeat: the join counts it and learns nothing
            entry.bought_at = t
            delay = t - entry.ts
            if delay <= elapsed:
                within += 1
            else:
                after += 1
            if delay > elapsed or entry.sampled:
                learn(entry.x, True, entry.f)
    assert within > 20 and after > 20
    assert core.counts["bought_within_elapsed"] == within
    assert core.counts["bought_after_elapsed"] == after
    assert weights(core.variants["main"].model) == weights(reference)


def at(seconds: float) -> datetime:
    return datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def shown_at_0() -> Impression:
    """u1 is shown item i1 (impression m1) at 0 s."""
    return Impression(
        event_id="e1",
        ts=at(0),
        user_id="u1",
        impression_id="m1",
        item_id="i1",
        context=Context(query="merino dk", device="mobile", page="search", position=0),
        item=Item(price=9.5, category="merino", brand="Drops"),
    )


@pytest.mark.parametrize("method", ["window", "fnw", "esdfm"])
def test_a_purchase_after_its_window_still_teaches_the_model(
    redis_client: redis.Redis, settings: StreamSettings, method: str
) -> None:
    core = Learner(
        # The published methods exactly, with the model's own latest estimate as f: the
        # served average of the weights (learner/averaging.py) has its own test.
        LearnerSettings(
            metrics_port=0,
            delayed_feedback=method,  # type: ignore[arg-type]
            join_window_s=WINDOW_S,
            served_average=0,
        ),
        ShardKeys(settings.key_prefix, "main"),
        AggregateCache(redis_client),
    )
    shown = shown_at_0()
    later = Click(event_id="e2", ts=at(WINDOW_S + 30), user_id="u2", item_id="i2")
    bought = Purchase(
        event_id="e3", ts=at(WINDOW_S + 60), user_id="u1", item_id="i1", impression_id="m1"
    )
    events: list[Event] = [shown, later, bought]
    core.prefetch(events)
    for offset, event in enumerate(events[:2]):
        core.process(event, 0, offset)
    assert core.joins.counts == {"negative_window": 1}
    before = weights(core.variants["main"].model)
    core.process(bought, 0, 2)
    after = weights(core.variants["main"].model)
    assert core.joins.counts == {"negative_window": 1, "late_outcome": 1}
    assert after != before
    # Towards buying: the intercept and every weight the example touched moved up.
    assert after[1] > before[1]
    assert all(
        after[0][k] >= before[0].get(k, 0.0) for k in after[0] if not math.isnan(after[0][k])
    )
    # A second copy of the purchase is a duplicate and teaches nothing.
    core.process(bought.model_copy(update={"event_id": "e4"}), 0, 3)
    assert weights(core.variants["main"].model) == after
    assert core.joins.counts["duplicate_outcome"] == 1


def test_a_performance_drift_alert_makes_the_optimizer_take_full_steps_again() -> None:
    adagrad = build_model("logreg", {"optimizer": "adagrad"})
    variant = Variant("main", "logreg", adagrad, ProgressiveMetrics(100))
    for x, y in synthetic_stream(500, seed=3):
        variant.learn(x, y)
    parts = logreg_parts(variant.model)
    assert parts is not None and parts[1].optimizer.g2
    assert variant.adapt()
    assert not parts[1].optimizer.g2
    # The bayes optimizer forgets most of its certainty: its variances grow up to a
    # hundredfold, none beyond its prior.
    bayes = Variant("b", "logreg", build_model("logreg"), ProgressiveMetrics(100))
    for x, y in synthetic_stream(500, seed=3):
        bayes.learn(x, y)
    parts = logreg_parts(bayes.model)
    assert parts is not None
    narrowed = float(parts[1]._cov[0, 0])
    assert bayes.adapt()
    assert float(parts[1]._cov[0, 0]) == pytest.approx(min(narrowed * WIDEN, 1.0))
    sgd = Variant(
        "s", "logreg", build_model("logreg", {"optimizer": "sgd"}), ProgressiveMetrics(10)
    )
    assert not sgd.adapt()


def read_a_purchase_90_s_after(core: Learner, purchase_read_first: bool) -> None:
    """u1 is shown m1 at 0 s and buys it at 90 s (partition 0); u2's events at 0 s and 200 s
    (partition 1) move the watermark past 60 s. With `purchase_read_first`, partition 0 is
    read ahead: the purchase comes before the watermark passes 60 s."""
    shown = shown_at_0()
    other = Click(event_id="e2", ts=at(0), user_id="u2", item_id="i2")
    bought = Purchase(event_id="e3", ts=at(90), user_id="u1", item_id="i1", impression_id="m1")
    moved = Click(event_id="e4", ts=at(200), user_id="u2", item_id="i2")
    later: list[tuple[Event, int]] = [(bought, 0), (moved, 1)]
    events: list[tuple[Event, int]] = [(shown, 0), (other, 1)]
    events += later if purchase_read_first else later[::-1]
    core.prefetch([e for e, _ in events])
    offsets = {0: 0, 1: 0}
    for event, partition in events:
        core.process(event, partition, offsets[partition])
        offsets[partition] += 1
    assert core.joins.watermark > 60


@pytest.mark.parametrize("purchase_read_first", [True, False])
def test_the_label_at_the_elapsed_time_is_the_purchases_own_time_however_partitions_interleave(
    redis_client: redis.Redis,
    settings: StreamSettings,
    monkeypatch: pytest.MonkeyPatch,
    purchase_read_first: bool,
) -> None:
    """A purchase made after the elapsed time is learned as a later positive, and its
    impression as a negative at the elapsed time, whether the purchase is read before the
    watermark passes that time (its partition read ahead) or after."""
    learned: list[bool] = []
    train = Variant.train

    def recording(self: Variant, x: Any, y: bool, w: float = 1.0) -> None:
        learned.append(y)
        train(self, x, y, w)

    monkeypatch.setattr(Variant, "train", recording)
    core = Learner(
        LearnerSettings(
            metrics_port=0, delayed_feedback="esdfm", join_window_s=WINDOW_S, elapsed_s=60.0
        ),
        ShardKeys(settings.key_prefix, "main"),
        AggregateCache(redis_client),
    )
    read_a_purchase_90_s_after(core, purchase_read_first)
    assert sorted(learned) == [False, True]
    assert learned == ([True, False] if purchase_read_first else [False, True])
    assert core.counts["bought_after_elapsed"] == 1
    assert core.counts["bought_within_elapsed"] == 0


@pytest.mark.parametrize("purchase_read_first", [True, False])
def test_the_guards_judge_the_label_at_their_delay_by_the_purchases_own_time(
    redis_client: redis.Redis,
    settings: StreamSettings,
    monkeypatch: pytest.MonkeyPatch,
    purchase_read_first: bool,
) -> None:
    """The guards see an impression `guard_delay_s` after it with the purchases made by
    then: one made later is not in it, even when its partition was read ahead."""
    judged: list[bool] = []
    guard = Learner._guard

    def recording(self: Learner, name: str, variant: Variant, x: Any, y: bool, *rest: Any) -> None:
        judged.append(y)
        guard(self, name, variant, x, y, *rest)

    monkeypatch.setattr(Learner, "_guard", recording)
    core = Learner(
        LearnerSettings(metrics_port=0, join_window_s=WINDOW_S, guard_delay_s=60.0),
        ShardKeys(settings.key_prefix, "main"),
        AggregateCache(redis_client),
    )
    read_a_purchase_90_s_after(core, purchase_read_first)
    assert judged == [False]
