"""The mean-loss window judges a rise against what the label rate explains: a cluster of
positives on a clean 5 % stream, whose model does not change, opens no mean-loss alert; a
model that gets worse opens one, on a balanced stream and on an imbalanced one whose
positives also grow more common. Unit level: no Kafka, no Redis."""

import math
import pickle
import random
from collections.abc import Callable

from guards.alerts import Alert
from guards.drift import DriftMonitor
from guards.rising import MixCut, RisingMean
from guards.settings import GuardSettings

Stream = Callable[[int], tuple[float, float, float]]
"""Example number -> (positive rate, typical prediction for a positive, for a negative)."""


def loss_alerts(stream: Stream, n: int, seed: int, settings: GuardSettings) -> list[Alert]:
    """The monitor's opened mean-loss alerts on `n` examples drawn from `stream`."""
    rng = random.Random(seed)
    monitor = DriftMonitor("m", "v", settings)
    found = []
    for i in range(1, n + 1):
        rate, on_pos, on_neg = stream(i)
        y = rng.random() < rate
        # The prediction scatters around its class's typical one (a model ranks, it does
        # not know): the loss varies within each class as well as between them.
        centre = on_pos if y else on_neg
        p = 1.0 / (1.0 + math.exp(-(math.log(centre / (1.0 - centre)) + rng.gauss(0.0, 0.5))))
        loss = -math.log(p if y else 1.0 - p)
        alerts = monitor.update(loss, {}, p, float(i), y)
        found += [a for a in alerts if a.signal == "mean_loss" and a.ends is None]
    return found


def clustered(i: int) -> tuple[float, float, float]:
    """An unchanging model (about 0.06 for everyone: a loss near 2.9 on a purchase, 0.06
    otherwise) on a 5 % stream whose positives come in clusters: 7 % for 3,000 examples
    twice, and no drift."""
    cluster = 30_000 <= i < 33_000 or 45_000 <= i < 48_000
    return 0.07 if cluster else 0.05, 0.06, 0.06


def test_clustered_positives_of_an_unchanged_model_open_no_mean_loss_alert() -> None:
    mixed = GuardSettings()
    unmixed = GuardSettings(drift_loss_label_mix=False)
    raised = [s for s in range(3) if loss_alerts(clustered, 60_000, s, unmixed)]
    assert raised, "against the older mean alone, a cluster passes for a drift"
    for seed in raised:
        assert loss_alerts(clustered, 60_000, seed, mixed) == []


def test_a_model_that_gets_worse_on_a_balanced_stream_is_alerted() -> None:
    def stream(i: int) -> tuple[float, float, float]:
        return (0.5, 0.8, 0.2) if i <= 20_000 else (0.5, 0.65, 0.35)

    for seed in range(3):
        alerts = loss_alerts(stream, 30_000, seed, GuardSettings())
        assert alerts and 20_000 < int(alerts[0].id.rsplit(":", 2)[1]) < 22_000


def test_a_model_that_gets_worse_as_positives_grow_common_is_alerted() -> None:
    # Positives from 5 % to 10 % while the model's predictions for them fall from 0.15 to
    # 0.05 and rise for the others: the mix explains part of the rise, not all of it.
    def stream(i: int) -> tuple[float, float, float]:
        return (0.05, 0.15, 0.05) if i <= 20_000 else (0.1, 0.05, 0.1)

    for seed in range(3):
        alerts = loss_alerts(stream, 30_000, seed, GuardSettings())
        assert alerts and 20_000 < int(alerts[0].id.rsplit(":", 2)[1]) < 22_000
        assert "positive rate" in alerts[0].message


def test_the_cut_reports_the_labels_over_its_own_two_parts_and_pickles() -> None:
    rng = random.Random(11)
    window = RisingMean(0.01, 0.05, 4)
    cuts = []
    for i in range(40_000):
        y = rng.random() < (0.05 if i < 20_000 else 0.15)
        # One value per class: the mean moves with the label rate alone.
        cut = window.add(0.6 if y else 0.01, y)
        if cut is not None:
            cuts.append(cut)
    rise = next(c for c in cuts if c.rise)
    assert isinstance(rise, MixCut)
    assert rise.label_after > rise.label_before
    assert math.isclose(rise.expected, rise.after, rel_tol=1e-5)  # all of it explained
    copy = pickle.loads(pickle.dumps(window))
    tail = [rng.random() < 0.3 for _ in range(5_000)]
    assert [window.add(0.5 * h, h) for h in tail] == [copy.add(0.5 * h, h) for h in tail]


def test_a_window_pickled_before_it_kept_the_labels_still_loads() -> None:
    # Such state is then not resumed (guards/persisted.py), but reading it must not crash.
    window = RisingMean(0.01, 0.05, 4)
    for i in range(1_000):
        window.add(0.1 * (i % 3))
    state = window.__getstate__()
    del state["_pos"], state["_pos_sum"]
    old = RisingMean.__new__(RisingMean)
    old.__setstate__(state)
    assert old.width == window.width
