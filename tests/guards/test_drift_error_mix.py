"""The error window judges a rise against what the label rate explains: a cluster of
positives on a clean imbalanced stream, where the model never predicts positive, opens
no error alert; a model that gets worse opens one, on a balanced stream and on an
imbalanced one whose positives also grow more common. Unit level: no Kafka, no Redis."""

import math
import pickle
import random
from collections.abc import Callable

from guards.alerts import Alert
from guards.drift import DriftMonitor
from guards.rising import MixCut, RisingError
from guards.settings import GuardSettings

Rates = Callable[[int], tuple[float, float, float]]
"""Example number -> (positive rate, error on positives, error on negatives)."""


def error_alerts(rates: Rates, n: int, seed: int, settings: GuardSettings) -> list[Alert]:
    """The monitor's opened error alerts on `n` examples drawn from `rates`."""
    rng = random.Random(seed)
    monitor = DriftMonitor("m", "v", settings)
    found = []
    for i in range(1, n + 1):
        rate, fnr, fpr = rates(i)
        y = rng.random() < rate
        wrong = rng.random() < (fnr if y else fpr)
        p = 0.9 if y != wrong else 0.04  # at or above the 0.5 cut: says positive
        q = p if y else 1.0 - p
        alerts = monitor.update(-math.log(q), {}, p, float(i), y)
        found += [a for a in alerts if a.signal == "error" and a.ends is None]
    return found


def clustered(i: int) -> tuple[float, float, float]:
    """A model that never says positive (its error is the label rate) on a 5 % stream
    whose positives come in clusters: 7 % for 3,000 examples twice, and no drift."""
    cluster = 30_000 <= i < 33_000 or 45_000 <= i < 48_000
    return 0.07 if cluster else 0.05, 1.0, 0.0


def test_clustered_positives_a_model_never_predicts_open_no_error_alert() -> None:
    mixed = GuardSettings()
    unmixed = GuardSettings(drift_error_label_mix=False)
    raised = [s for s in range(6) if error_alerts(clustered, 60_000, s, unmixed)]
    assert raised, "against the older error alone, a cluster passes for a drift"
    for seed in raised:
        assert error_alerts(clustered, 60_000, seed, mixed) == []


def test_a_model_that_gets_worse_on_a_balanced_stream_is_alerted() -> None:
    def rates(i: int) -> tuple[float, float, float]:
        return (0.5, 0.1, 0.1) if i <= 20_000 else (0.5, 0.2, 0.2)

    for seed in range(3):
        alerts = error_alerts(rates, 30_000, seed, GuardSettings())
        assert alerts and 20_000 < int(alerts[0].id.rsplit(":", 2)[1]) < 21_000


def test_a_model_that_gets_worse_as_positives_grow_common_is_alerted() -> None:
    # Positives from 5 % to 10 % while the model misses half of them instead of a fifth:
    # the mix explains an error of 0.060 after 0.040 (a +50 % rise); it goes to 0.086.
    def rates(i: int) -> tuple[float, float, float]:
        return (0.05, 0.2, 0.032) if i <= 20_000 else (0.1, 0.5, 0.04)

    for seed in range(3):
        (alert,) = error_alerts(rates, 30_000, seed, GuardSettings())
        assert 20_000 < int(alert.id.rsplit(":", 2)[1]) < 22_000
        assert "positive rate" in alert.message


def test_the_cut_reports_the_labels_over_its_own_two_parts_and_pickles() -> None:
    rng = random.Random(11)
    window = RisingError(0.0005)
    cuts = []
    for i in range(40_000):
        y = rng.random() < (0.05 if i < 20_000 else 0.15)
        cut = window.update(y, y)  # the error is the label: a model that never says positive
        if cut is not None:
            cuts.append(cut)
    rise = next(c for c in cuts if c.rise)
    assert isinstance(rise, MixCut)
    assert math.isclose(rise.label_before, rise.before) and math.isclose(
        rise.label_after, rise.after
    )
    assert math.isclose(rise.expected, rise.after)  # all of it explained
    copy = pickle.loads(pickle.dumps(window))
    tail = [rng.random() < 0.3 for _ in range(5_000)]
    assert [window.update(h, h) for h in tail] == [copy.update(h, h) for h in tail]
