"""Progressive metrics: River's own values, cumulative and over a rolling window."""

import pickle
import random

import pytest
from river import metrics, utils

from learner.metrics import ProgressiveMetrics

KEYS = {"log_loss", "roc_auc", "accuracy"}


def scored(n: int, seed: int = 0) -> list[tuple[bool, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.random() < 0.3
        p = min(1.0, max(0.0, rng.gauss(0.6 if y else 0.35, 0.2)))
        out.append((y, p))
    # The edges: certain and wrong, certain and right, exactly on the threshold.
    return [*out, (True, 0.0), (False, 1.0), (True, 1.0), (False, 0.5), (True, 0.5)]


def river_values(pairs: list[tuple[bool, float]], window: int | None) -> dict[str, float]:
    def wrap(cls: type) -> metrics.base.Metric:
        return cls() if window is None else utils.Rolling(cls, window_size=window)

    log_loss, roc_auc, accuracy = (
        wrap(metrics.LogLoss),
        wrap(metrics.ROCAUC),
        wrap(metrics.Accuracy),
    )
    for y, p in pairs:
        log_loss.update(y, p)
        roc_auc.update(y, p)
        accuracy.update(y, p > 0.5)
    return {"log_loss": log_loss.get(), "roc_auc": roc_auc.get(), "accuracy": accuracy.get()}


def test_the_report_has_every_value() -> None:
    report = ProgressiveMetrics(window=10).report()
    assert set(report) == {"n", "rolling_n", *KEYS, *(f"rolling_{k}" for k in KEYS)}
    assert report["n"] == 0
    assert all(isinstance(v, float | int) for v in report.values())


@pytest.mark.parametrize("window", [1, 7, 100, 5000])
def test_values_equal_rivers_own_to_the_last_digit(window: int) -> None:
    pairs = scored(1200)
    progressive = ProgressiveMetrics(window)
    for y, p in pairs:
        progressive.update(y, p)
    report = progressive.report()
    assert {k: report[k] for k in KEYS} == river_values(pairs, None)
    assert {k: report[f"rolling_{k}"] for k in KEYS} == river_values(pairs, window)
    assert report["n"] == len(pairs)
    assert report["rolling_n"] == min(window, len(pairs))


def test_the_model_label_can_replace_the_threshold() -> None:
    progressive = ProgressiveMetrics(window=5)
    progressive.update(True, 0.5, y_pred=True)
    progressive.update(False, 0.5)
    assert progressive.report()["accuracy"] == 1.0


def test_a_pickled_copy_continues_exactly() -> None:
    pairs = scored(600, seed=1)
    original = ProgressiveMetrics(window=50)
    for y, p in pairs[:300]:
        original.update(y, p)
    copy = pickle.loads(pickle.dumps(original))
    assert copy.report() == original.report()
    for y, p in pairs[300:]:
        original.update(y, p)
        copy.update(y, p)
    assert copy.report() == original.report()


def test_the_window_pickles_small() -> None:
    progressive = ProgressiveMetrics(window=1000)
    for y, p in scored(3000, seed=2):
        progressive.update(y, p)
    assert len(pickle.dumps(progressive, protocol=pickle.HIGHEST_PROTOCOL)) < 20_000


def test_a_window_must_hold_something() -> None:
    with pytest.raises(ValueError, match="window"):
        ProgressiveMetrics(window=0)
