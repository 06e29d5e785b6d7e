"""Delayed feedback: what the learner learns, when and how much, against River and the papers.

Each method runs through the learner's own core on a simulator stream (aggregates in the
real Redis) and is replayed with River's plain pipeline on the features the learner
computed, as the method prescribes. Same weights in the same order give the same model,
bit for bit.
"""

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from river import evaluate, metrics

import learner.features
import learner.loop
from headrace.sim.simulator import SimulatorConfig, generate
from learner.aggregates import AggregateCache
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


def run(client: redis.Redis, settings: StreamSettings, method: str, count: int) -> Recording:
    core = Recording(
        # The published methods exactly, with the model's own latest estimate as f: the
        # served average of the weights (learner/averaging.py) has its own test.
        LearnerSettings(
            metrics_port=0,
            delayed_feedback=method,  # type: ignore[arg-type]
            join_window_s=WINDOW_S,
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


def at(seconds: float) -> datetime:
    return datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=seconds)


@pytest.mark.parametrize("method", ["window", "fnw"])
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
    shown = Impression(
        event_id="e1",
        ts=at(0),
        user_id="u1",
        impression_id="m1",
        item_id="i1",
        context=Context(query="merino dk", device="mobile", page="search", position=0),
        item=Item(price=9.5, category="merino", brand="Drops"),
    )
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
    variant = Variant("main", "logreg", build_model("logreg"), ProgressiveMetrics(100))
    for x, y in synthetic_stream(500, seed=3):
        variant.learn(x, y)
    parts = logreg_parts(variant.model)
    assert parts is not None and parts[1].optimizer.g2
    assert variant.adapt()
    assert not parts[1].optimizer.g2
    sgd = Variant(
        "s", "logreg", build_model("logreg", {"optimizer": "sgd"}), ProgressiveMetrics(10)
    )
    assert not sgd.adapt()
