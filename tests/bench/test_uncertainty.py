"""The quality benchmark's standard errors (bench/uncertainty.py) against brute force."""

import numpy as np
import pytest

from bench.uncertainty import delong_error, draw_error, exact_auc, held_out_errors
from tests.heldout import expected_auc


def stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hidden probabilities near a 5 % rate and a model's noisy scores of them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    p = 1.0 / (1.0 + np.exp(-(0.9 * z - 3.2)))
    scores = 1.0 / (1.0 + np.exp(-(0.8 * z + 0.4 * rng.normal(size=n) - 3.1)))
    return p, scores


def brute_auc(ys: np.ndarray, ps: np.ndarray) -> float:
    pos, neg = ps[ys], ps[~ys]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def brute_delong(ys: np.ndarray, ps: np.ndarray) -> float:
    pos, neg = ps[ys], ps[~ys]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)))


def test_exact_auc_and_delong_match_the_pairs_ties_included() -> None:
    p, scores = stream(600, seed=1)
    ys = np.random.default_rng(2).random(600) < p * 4
    tied = np.round(scores, 2)  # many ties
    for s in (scores, tied):
        assert exact_auc(ys, s) == pytest.approx(brute_auc(ys, s), abs=1e-12)
        assert delong_error(ys, s) == pytest.approx(brute_delong(ys, s), rel=1e-9)


def test_delong_estimates_the_spread_of_the_auc_over_label_draws() -> None:
    # DeLong's from one draw of labels against the exact spread over many draws: the two
    # ways the benchmark reads the rolling AUC's noise agree on 10,000 examples.
    p, scores = stream(10_000, seed=3)
    ys = np.random.default_rng(4).random(len(p)) < p
    spread = draw_error(p, scores, draws=200, seed=5)
    assert delong_error(ys, scores) == pytest.approx(spread, rel=0.2)


def test_held_out_errors_resample_whole_requests() -> None:
    p, scores = stream(2_000, seed=6)
    errors = held_out_errors(p, scores, k=10, resamples=200, seed=7)
    assert errors.resamples == 200
    assert 0 < errors.ratio < errors.auc < 0.05
    assert 0 < errors.calibration < 0.1
    # The same scores scored against themselves have no ratio to spread.
    assert held_out_errors(p, p, k=10, resamples=50).ratio == pytest.approx(0.0, abs=1e-12)
    assert expected_auc(p, scores) > 0.5
    with pytest.raises(ValueError, match="requests of 10"):
        held_out_errors(p[:-1], scores[:-1], k=10)
