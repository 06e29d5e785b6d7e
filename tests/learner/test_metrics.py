"""Progressive metrics: River's log loss and accuracy, exact rolling AUCs, a bounded
cumulative AUC, calibration and the reliability table, against brute force."""

import base64
import itertools
import logging
import math
import pickle
import random
from collections.abc import Sequence

import numpy as np
import pytest
from river import metrics, utils

from learner.metrics import BINS, RELIABILITY_EDGES, ProgressiveMetrics

Pairs = list[tuple[bool, float]]

WINDOWED = (
    "log_loss",
    "accuracy",
    "roc_auc",
    "pr_auc",
    "mean_prediction",
    "positive_rate",
    "calibration",
)
KEYS = {
    "n",
    "rolling_n",
    "roc_auc_error",
    "rolling_roc_auc_se",
    *WINDOWED,
    *(f"rolling_{k}" for k in WINDOWED),
}


def scored(n: int, seed: int = 0) -> Pairs:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.random() < 0.3
        p = min(1.0, max(0.0, rng.gauss(0.6 if y else 0.35, 0.2)))
        out.append((y, p))
    # The edges: certain and wrong, certain and right, exactly on the threshold.
    return [*out, (True, 0.0), (False, 1.0), (True, 1.0), (False, 0.5), (True, 0.5)]


def tied(n: int, seed: int) -> Pairs:
    """Probabilities on a coarse grid: many ties, inside and across classes."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.random() < 0.2
        out.append((y, round(min(1.0, max(0.0, rng.gauss(0.3 if y else 0.2, 0.1))), 2)))
    return out


def purchases(n: int, seed: int) -> Pairs:
    """A store's stream: probabilities mostly 0.001 to 0.3, about 5 % positives, labels drawn
    from the probabilities themselves."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-3.5, 1.1, n)))
    y = rng.random(n) < p
    return list(zip(y.tolist(), p.tolist(), strict=True))


def brute_roc_auc(pairs: Pairs) -> float | None:
    """Every (positive, negative) pair: 1 when ranked right, 1/2 when tied."""
    pos = np.array([p for y, p in pairs if y])
    neg = np.array([p for y, p in pairs if not y])
    if not len(pos) or not len(neg):
        return None
    right = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(right) / (len(pos) * len(neg))


def brute_roc_auc_se(pairs: Pairs) -> float | None:
    """DeLong's: every pair's 1, 1/2 or 0, averaged per positive and per negative."""
    pos = np.array([p for y, p in pairs if y])
    neg = np.array([p for y, p in pairs if not y])
    if len(pos) < 2 or len(neg) < 2:
        return None
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    per_pos, per_neg = psi.mean(axis=1), psi.mean(axis=0)
    variance = per_pos.var(ddof=1) / len(pos) + per_neg.var(ddof=1) / len(neg)
    return float(np.sqrt(variance))


def brute_average_precision(pairs: Pairs) -> float | None:
    """At every distinct score, from the highest: the recall it adds times the precision of
    everything scored at least that high."""
    positives = sum(y for y, _ in pairs)
    if positives in (0, len(pairs)):
        return None
    total, hits, taken = 0.0, 0, 0
    ordered = sorted(pairs, key=lambda pair: pair[1], reverse=True)
    for _, group in itertools.groupby(ordered, key=lambda pair: pair[1]):
        labels = [y for y, _ in group]
        added = sum(labels)
        hits, taken = hits + added, taken + len(labels)
        total += added / positives * hits / taken
    return total


def river_values(pairs: Pairs, window: int | None) -> dict[str, float]:
    def wrap(cls: type) -> metrics.base.Metric:
        return cls() if window is None else utils.Rolling(cls, window_size=window)

    log_loss, accuracy = wrap(metrics.LogLoss), wrap(metrics.Accuracy)
    for y, p in pairs:
        log_loss.update(y, p)
        accuracy.update(y, p > 0.5)
    return {"log_loss": log_loss.get(), "accuracy": accuracy.get()}


def fed(pairs: Sequence[tuple[bool, float]], window: int) -> ProgressiveMetrics:
    progressive = ProgressiveMetrics(window)
    for y, p in pairs:
        progressive.update(y, p)
    return progressive


def test_an_empty_report_has_every_key_and_no_made_up_values() -> None:
    report = ProgressiveMetrics(window=10).report()
    assert set(report) == KEYS
    assert report["n"] == 0 and report["rolling_n"] == 0
    assert {k for k, v in report.items() if v is not None} == {"n", "rolling_n"}


@pytest.mark.parametrize("label", [True, False])
def test_one_class_has_no_auc_and_no_minus_zero(label: bool) -> None:
    report = fed([(label, p) for p in (0.1, 0.2, 0.2, 0.9)], window=3).report()
    for key in (
        "roc_auc",
        "roc_auc_error",
        "pr_auc",
        "rolling_roc_auc",
        "rolling_roc_auc_se",
        "rolling_pr_auc",
    ):
        assert report[key] is None, key
    assert report["positive_rate"] == float(label)
    assert report["mean_prediction"] == pytest.approx(0.35)
    if label:
        assert report["calibration"] == pytest.approx(0.35)
    else:
        assert report["calibration"] is None and report["rolling_calibration"] is None
    assert all(v is None or isinstance(v, int | float) for v in report.values())


@pytest.mark.parametrize("window", [1, 7, 100, 5000])
def test_log_loss_and_accuracy_equal_rivers_own_to_the_last_digit(window: int) -> None:
    pairs = scored(1200)
    report = fed(pairs, window).report()
    assert {k: report[k] for k in ("log_loss", "accuracy")} == river_values(pairs, None)
    rolling = {k: report[f"rolling_{k}"] for k in ("log_loss", "accuracy")}
    assert rolling == river_values(pairs, window)
    assert report["n"] == len(pairs)
    assert report["rolling_n"] == min(window, len(pairs))


@pytest.mark.parametrize(
    ("pairs", "window"),
    [(scored(900, seed=3), 250), (tied(900, seed=4), 300), (tied(400, seed=5), 1000)],
)
def test_rolling_aucs_are_exact_over_the_window(pairs: Pairs, window: int) -> None:
    report = fed(pairs, window).report()
    last = pairs[-window:]
    assert report["rolling_roc_auc"] == pytest.approx(brute_roc_auc(last), abs=1e-12)
    assert report["rolling_roc_auc_se"] == pytest.approx(brute_roc_auc_se(last), rel=1e-9)
    assert report["rolling_pr_auc"] == pytest.approx(brute_average_precision(last), abs=1e-12)


def test_the_rolling_aucs_standard_error_is_its_spread_over_draws_of_the_labels() -> None:
    # A store's stream: the AUC of a window of 5,000 examples (about 240 purchases) over
    # labels drawn again from the same probabilities spreads as the one window's DeLong
    # error says it does.
    rng = np.random.default_rng(11)
    p = 1 / (1 + np.exp(-rng.normal(-3.5, 1.1, 5_000)))
    aucs: list[float] = []
    errors: list[float] = []
    for _ in range(200):
        y = rng.random(len(p)) < p
        report = fed(list(zip(y.tolist(), p.tolist(), strict=True)), 5_000).report()
        auc, error = report["rolling_roc_auc"], report["rolling_roc_auc_se"]
        assert auc is not None and error is not None
        aucs.append(auc)
        errors.append(error)
    assert float(np.mean(errors)) == pytest.approx(float(np.std(aucs, ddof=1)), rel=0.2)


def test_the_window_it_scores_is_the_last_examples_in_order() -> None:
    pairs = scored(900, seed=6)
    ys, ps = fed(pairs, 250).window_scored()
    assert ys.tolist() == [y for y, _ in pairs[-250:]]
    assert ps.tolist() == [p for _, p in pairs[-250:]]


def test_the_cumulative_auc_is_within_its_error_bound_on_a_store_stream() -> None:
    pairs = purchases(30_000, seed=6)
    report = fed(pairs, window=1000).report()
    exact = brute_roc_auc(pairs)
    assert exact is not None and 0.7 < exact < 0.9
    error, auc = report["roc_auc_error"], report["roc_auc"]
    assert isinstance(error, float) and isinstance(auc, float)
    assert abs(auc - exact) <= error <= 0.005
    # Average precision from the same bins: measured 3e-4 to 2e-3 off on such streams.
    assert report["pr_auc"] == pytest.approx(brute_average_precision(pairs), abs=0.003)


def test_the_error_bound_holds_when_one_bin_holds_everything() -> None:
    """Distinct scores closer than a bin: the histogram cannot order them, and says so."""
    pairs = [(i >= 50, 0.05 + i * 1e-9) for i in range(100)]
    report = fed(pairs, window=10).report()
    assert brute_roc_auc(pairs) == 1.0
    assert report["roc_auc"] == 0.5 and report["roc_auc_error"] == 0.5


@pytest.mark.parametrize("pairs", [tied(2000, seed=7), [(i % 3 == 0, 0.5) for i in range(30)]])
def test_the_cumulative_aucs_are_exact_when_no_bin_holds_two_scores(pairs: Pairs) -> None:
    """On a grid coarser than the bins, ties are counted half, as the exact AUC does."""
    report = fed(pairs, window=10).report()
    assert report["roc_auc"] == pytest.approx(brute_roc_auc(pairs), abs=1e-12)
    assert report["pr_auc"] == pytest.approx(brute_average_precision(pairs), abs=1e-12)


@pytest.mark.parametrize("window", [10, 500, 5000])
def test_calibration_is_mean_prediction_over_observed_rate(window: int) -> None:
    pairs = purchases(3000, seed=8)
    report = fed(pairs, window).report()
    for prefix, part in (("", pairs), ("rolling_", pairs[-window:])):
        mean = math.fsum(p for _, p in part) / len(part)
        rate = sum(y for y, _ in part) / len(part)
        assert report[f"{prefix}mean_prediction"] == pytest.approx(mean, rel=1e-12)
        assert report[f"{prefix}positive_rate"] == pytest.approx(rate, rel=1e-12)
        if rate:
            assert report[f"{prefix}calibration"] == pytest.approx(mean / rate, rel=1e-12)
        else:
            assert report[f"{prefix}calibration"] is None


def test_the_reliability_table_counts_each_bin() -> None:
    pairs = [*purchases(5000, seed=9), (True, 0.01), (False, 1.0), (True, 0.0), (False, 0.7)]
    window = 400
    table = fed(pairs, window).reliability()
    edges = [(row["lower"], row["upper"]) for row in table]
    assert edges == list(itertools.pairwise(RELIABILITY_EDGES))
    last = len(table) - 1
    for prefix, part in (("", pairs), ("rolling_", pairs[-window:])):
        for i, row in enumerate(table):
            lower, upper = row["lower"], row["upper"]
            assert isinstance(lower, float) and isinstance(upper, float)
            inside = [(y, p) for y, p in part if lower <= p < upper or (i == last and p == 1.0)]
            assert row[f"{prefix}count"] == len(inside)
            if inside:
                mean = sum(p for _, p in inside) / len(inside)
                rate = sum(y for y, _ in inside) / len(inside)
                assert row[f"{prefix}mean_predicted"] == pytest.approx(mean, rel=1e-9)
                assert row[f"{prefix}observed_rate"] == pytest.approx(rate, rel=1e-12)
            else:
                assert row[f"{prefix}mean_predicted"] is None
                assert row[f"{prefix}observed_rate"] is None
    assert sum(row["count"] for row in table) == len(pairs)  # type: ignore[misc]


def test_an_empty_reliability_table_has_its_bins_and_no_rates() -> None:
    table = ProgressiveMetrics(window=5).reliability()
    assert len(table) == len(RELIABILITY_EDGES) - 1
    assert all(row["count"] == 0 and row["observed_rate"] is None for row in table)


def test_the_model_label_can_replace_the_threshold() -> None:
    progressive = ProgressiveMetrics(window=5)
    progressive.update(True, 0.5, y_pred=True)
    progressive.update(False, 0.5)
    assert progressive.report()["accuracy"] == 1.0


def test_broken_probabilities_never_make_the_numbers_nan() -> None:
    pairs = [(True, float("nan")), (False, -0.5), (True, 1.5), (False, 0.2), (True, 0.7)]
    report = fed(pairs, window=4).report()
    assert all(v is not None and math.isfinite(v) for v in report.values())
    assert report["mean_prediction"] == pytest.approx((0.5 + 0.0 + 1.0 + 0.2 + 0.7) / 5)


def test_a_pickled_copy_continues_exactly() -> None:
    pairs = scored(600, seed=1)
    original = fed(pairs[:300], window=50)
    copy = pickle.loads(pickle.dumps(original))
    assert copy.report() == original.report()
    assert copy.reliability() == original.reliability()
    for y, p in pairs[300:]:
        original.update(y, p)
        copy.update(y, p)
    assert copy.report() == original.report()
    assert copy.reliability() == original.reliability()


def test_the_state_pickles_small() -> None:
    progressive = fed(purchases(50_000, seed=2), window=1000)
    assert progressive.report()["rolling_n"] == 1000
    assert len(pickle.dumps(progressive, protocol=pickle.HIGHEST_PROTOCOL)) < 20_000


# A ProgressiveMetrics(window=10) after 25 examples, pickled by the layout before
# STATE_VERSION 2 (River's ten-threshold ROC AUC), as a learner's committed core held it.
OLD_LAYOUT = base64.b64decode(
    "gAWVbwIAAAAAAACMD2xlYXJuZXIubWV0cmljc5SMElByb2dyZXNzaXZlTWV0cmljc5STlCmBlH2UKIwGd2luZG93"
    "lEsKjAFulEsZjAtfY3VtdWxhdGl2ZZRoAIwFX1RyaW+Uk5QpgZR9lCiMCGxvZ19sb3NzlIwWcml2ZXIubWV0cmlj"
    "cy5sb2dfbG9zc5SMB0xvZ0xvc3OUk5QpgZR9lIwFX21lYW6UjBByaXZlci5zdGF0cy5tZWFulIwETWVhbpSTlCmB"
    "lH2UKGgGR0A5AAAAAAAAaBJHP+wvOu3MtkF1YnNijApfcG9zaXRpdmVzlF2UKEsASwJLAEsBSwFLAEsBSwBLAEsB"
    "SwBljApfbmVnYXRpdmVzlF2UKEsASwNLBEsCSwJLAEsCSwFLBUsASwBljAhfY29ycmVjdJRLDYwGX3RvdGFslEsZ"
    "dWKMCF9yb2xsaW5nlGgJKYGUfZQoaAxoDymBlH2UaBJoFSmBlH2UKGgGR0AkAAAAAAAAaBJHP+mLqVvWhKR1YnNi"
    "aBhdlChLAEsASwBLAUsASwBLAUsASwBLAEsAZWgaXZQoSwBLAksASwFLAksASwFLAEsCSwBLAGVoHEsGaB1LCnVi"
    "jAdfcmVjZW50lIwLY29sbGVjdGlvbnOUjAVkZXF1ZZSTlClSlCiJRz+2yLQ5WBBiiYeUiUc/664UeuFHroiHlIlH"
    "P9MzMzMzMzOJh5SJRz/iTdLxqfvniIeUiUc/6yLQ5WBBiYiHlIlHP9p++dsi0OWJh5SJRz/blYEGJN0viYeUiEc/"
    "04UeuFHrhYmHlIlHP6YEGJN0vGqJh5SIRz/kCDEm6XjViIeUZXViLg=="
)


def test_state_from_the_old_layout_starts_afresh_with_its_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="headrace.learner"):
        restored = pickle.loads(OLD_LAYOUT)
    assert isinstance(restored, ProgressiveMetrics)
    assert "older layout" in caplog.text
    assert restored.window == 10
    report = restored.report()
    assert report["n"] == 25 and report["rolling_n"] == 0 and report["roc_auc"] is None
    pairs = tied(40, seed=10)
    for y, p in pairs:
        restored.update(y, p)
    fresh = fed(pairs, window=10).report()
    assert restored.report() == {**fresh, "n": 25 + len(pairs)}
    again = pickle.loads(pickle.dumps(restored))
    assert again.report() == restored.report()


def test_a_window_must_hold_something() -> None:
    with pytest.raises(ValueError, match="window"):
        ProgressiveMetrics(window=0)


def test_the_histogram_spans_the_probabilities_a_store_sees() -> None:
    """Probabilities from 1e-5 to 1 - 1e-5 fall in distinct bins a few thousandths wide."""
    pairs = [(i % 2 == 0, p) for i, p in enumerate(np.geomspace(1e-5, 0.5, 2000).tolist())]
    report = fed(pairs, window=10).report()
    assert BINS >= 2048
    assert report["roc_auc"] == pytest.approx(brute_roc_auc(pairs), abs=1e-3)
    error = report["roc_auc_error"]
    assert isinstance(error, float) and error < 2e-3
