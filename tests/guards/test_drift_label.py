"""The label-rate window of the drift monitor: a drift that changes how common positives
are is alerted even when the model does no worse on the new concept; a stable rate, and
the small significant wanders of a clean stream, raise nothing. Unit level: no Kafka, no
Redis."""

import math
import pickle
import random
from collections.abc import Iterator
from typing import Any

from river import compose, drift, linear_model, preprocessing
from river.datasets import synth

from guards.alerts import Alert
from guards.drift import DriftMonitor
from guards.settings import GuardSettings
from tests.guards.test_drift_benchmark import first_alarms, stream

AT = 20_000


def rbf(seed: int) -> Any:
    return synth.RandomRBFDrift(seed_model=seed, seed_sample=seed)


def new_centroids(seed: int) -> Any:
    return synth.RandomRBFDrift(seed_model=seed + 1_000, seed_sample=seed)


def alerts_and_adwin_cuts(examples: Iterator[Any]) -> tuple[list[Alert], list[tuple[int, bool]]]:
    """The monitor's alerts, and where River's ADWIN on the 0/1 error cut (after the first
    1,000 examples) and whether the error rose there."""
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    monitor = DriftMonitor("m", "v", GuardSettings())
    adwin = drift.ADWIN()
    alerts: list[Alert] = []
    cuts: list[tuple[int, bool]] = []
    for i, (x, label) in enumerate(examples, 1):
        y = bool(label)
        p = model.predict_proba_one(x).get(True, 0.5)
        q = min(max(p if y else 1.0 - p, 1e-15), 1.0)
        alerts += [a for a in monitor.update(-math.log(q), x, p, float(i), y) if a.ends is None]
        wrong = float((p >= 0.5) != y)
        size, total = adwin.width, adwin.total
        adwin.update(wrong)
        if adwin.drift_detected and i > 1_000:
            dropped = max(size + 1 - adwin.width, 1)
            cuts.append((i, adwin.estimation > (total + wrong - adwin.total) / dropped))
        model.learn_one(x, y)
    return alerts, cuts


def test_new_centroids_the_model_does_no_worse_on_are_alerted_by_the_label_rate() -> None:
    # bench/drift.py's RandomRBFDrift, abrupt, seed 0: River's ADWIN on the error cuts once
    # after the drift, at 23,072, on a fall (0.362 to 0.347); positives go from 44 % to 60 %.
    alerts, cuts = alerts_and_adwin_cuts(stream(rbf, new_centroids, 0, 24_000, AT, 1))
    after = [(i, rise) for i, rise in cuts if i >= AT]
    assert after and not after[0][1], "River's ADWIN cuts on a fall of the error"
    assert [a for a in alerts if int(a.id.rsplit(":", 2)[1]) < AT] == []
    first = [a for a in alerts if int(a.id.rsplit(":", 2)[1]) >= AT]
    assert first and int(first[0].id.rsplit(":", 2)[1]) <= after[0][0] + 500
    assert (first[0].detector, first[0].signal) == ("adwin", "label")
    assert first[0].value > first[0].threshold > 0.44
    assert first[0].test_statistic is not None and first[0].test_threshold is not None
    assert first[0].test_statistic > first[0].test_threshold
    assert "label rate of the last" in first[0].message and " up from " in first[0].message


def test_a_small_significant_wander_of_the_label_rate_is_no_alert() -> None:
    # River's Mixed, clean, seed 6: at River's confidence (0.002) the window cuts at 30,368 on
    # +7 % (0.460 to 0.493), under the 10 % floor; without the floor that was a false alarm.
    mixed = synth.Mixed(0, seed=6)
    loose = GuardSettings(drift_label_delta=0.002)
    guards, _ = first_alarms(iter(mixed.take(40_000)), settings=loose)
    assert guards == []
    floorless = GuardSettings(drift_label_delta=0.002, drift_label_min_change=0.0)
    guards, _ = first_alarms(iter(synth.Mixed(0, seed=6).take(40_000)), settings=floorless)
    assert guards == [30_368]


def labels(seed: int, n: int, rates: tuple[float, float], at: int) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < (rates[0] if i < at else rates[1]) for i in range(n)]


def label_alerts(monitor: DriftMonitor, ys: list[bool], restore_at: tuple[int, ...] = ()) -> Any:
    """Feeds a constant prediction and loss (nothing else moves) and the labels."""
    alerts: list[Alert] = []
    for i, y in enumerate(ys):
        if i in restore_at:
            monitor = pickle.loads(pickle.dumps(monitor))
        alerts += monitor.update(0.5, {}, 0.5, float(i), y)
    return alerts


def quiet() -> GuardSettings:
    """Only the label window: the error of a constant prediction moves with the labels."""
    return GuardSettings(drift_error_enabled=False, drift_psi_enabled=False)


def test_a_rise_and_a_fall_of_the_label_rate_are_alerted_both_ways() -> None:
    up = label_alerts(DriftMonitor("m", "v", quiet()), labels(1, 14_000, (0.3, 0.45), 10_000))
    down = label_alerts(DriftMonitor("m", "v", quiet()), labels(2, 14_000, (0.45, 0.3), 10_000))
    for alerts, word in ((up, " up from "), (down, " down from ")):
        assert alerts, word
        assert {(a.detector, a.signal) for a in alerts} == {("adwin", "label")}
        assert all(a.ends is None for a in alerts)  # points: nothing closes them
        assert 10_000 < int(alerts[0].id.rsplit(":", 2)[1]) <= 11_000
        assert word in alerts[0].message
    assert up[0].value > up[0].threshold and down[0].value < down[0].threshold


def test_a_stable_label_rate_raises_nothing_and_switched_off_nothing_at_all() -> None:
    ys = labels(3, 200_000, (0.05, 0.05), 0)
    assert label_alerts(DriftMonitor("m", "v", quiet()), ys) == []
    off = GuardSettings(drift_label_enabled=False, drift_error_enabled=False)
    shifted = labels(4, 14_000, (0.3, 0.45), 10_000)
    assert label_alerts(DriftMonitor("m", "v", off), shifted) == []


def test_a_restored_monitor_raises_the_label_alerts_of_one_that_never_stopped() -> None:
    ys = labels(5, 30_000, (0.2, 0.3), 12_000) + labels(6, 10_000, (0.15, 0.15), 0)
    expected = label_alerts(DriftMonitor("m", "v", quiet()), ys)
    assert len(expected) >= 2  # up at the first change, down at the second
    restored = label_alerts(DriftMonitor("m", "v", quiet()), ys, (5_000, 12_031, 30_500))
    assert restored == expected
