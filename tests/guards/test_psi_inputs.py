"""PSI on streams that carry other features than the store's: missing and unseen values."""

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis

from guards.drift import DriftMonitor
from guards.psi import PopulationStability
from guards.settings import GuardSettings
from learner.aggregates import AggregateCache
from learner.layout import ShardKeys
from learner.loop import Learner
from learner.settings import LearnerSettings
from stream.events import Labeled
from stream.settings import StreamSettings


def psis(tracker: PopulationStability, values: Sequence[float | str | None]) -> list[float]:
    return [v for value in values if (v := tracker.update(value)) is not None]


def test_missing_values_count_in_one_bin_whenever_they_arrive() -> None:
    rng = random.Random(4)
    # 20 % missing throughout: far more missing values than fix the bins (1,000).
    numbers = [None if rng.random() < 0.2 else rng.gauss(0, 1) for _ in range(20_000)]
    assert max(psis(PopulationStability(5_000, 10), numbers)) < 0.02
    texts = [None if rng.random() < 0.2 else rng.choice("abc") for _ in range(20_000)]
    assert max(psis(PopulationStability(5_000, 10), texts)) < 0.02


def test_a_rise_of_missing_values_is_a_shift() -> None:
    rng = random.Random(5)
    values = [
        None if rng.random() < (0.05 if i < 10_000 else 0.6) else rng.gauss(0, 1)
        for i in range(15_000)
    ]
    assert psis(PopulationStability(5_000, 10), values)[-1] > 0.25


def test_integers_and_floats_of_one_value_share_a_bin() -> None:
    # A producer's JSON says 3, the feature pipeline says 3.0: one position, not two.
    values: list[float | str | None] = [float(i % 10) for i in range(10_000)]
    values += [i % 10 for i in range(10_000)]
    assert max(psis(PopulationStability(5_000, 10), values)) < 0.01


def test_a_signal_is_watched_from_its_first_present_value() -> None:
    tracker = PopulationStability(1_000, 10)
    assert psis(tracker, [None] * 50_000) == []
    rng = random.Random(6)
    assert max(psis(tracker, [rng.gauss(0, 1) for _ in range(3_000)])) < 0.05


def own_features(rng: random.Random) -> dict[str, float | str]:
    return {"temperature": rng.gauss(20, 5), "region": rng.choice(["north", "south"])}


def test_features_a_stream_does_not_carry_are_never_alerted() -> None:
    monitor = DriftMonitor("m", "v", GuardSettings(drift_warmup=1_000, drift_psi_window=1_000))
    rng = random.Random(7)
    alerts = []
    for i in range(30_000):
        y = rng.random() < 0.1
        alerts += monitor.update(0.3, own_features(rng), 0.1, float(i), y)
    assert [a for a in alerts if a.detector == "psi"] == []


def test_a_labeled_stream_with_its_own_features_raises_no_psi_alert(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    keys = ShardKeys(settings.key_prefix, "main")
    guards = GuardSettings(drift_warmup=1_000, drift_psi_window=1_000)
    core = Learner(LearnerSettings(), keys, AggregateCache(redis_client), guards)
    rng = random.Random(8)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(8_000):
        x = own_features(rng)
        event = Labeled(
            event_id=f"e{i}",
            ts=start + timedelta(seconds=i),
            user_id=f"u{i % 50}",
            features=x,
            label=rng.random() < 0.2 + 0.02 * (float(x["temperature"]) - 20),
        )
        core.process(event, 0, i)
    assert core.monitors["main"].n == 8_000
    assert [a.signal for a in core.alerts if a.detector == "psi"] == []
