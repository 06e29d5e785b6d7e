"""The ceiling's posterior (bench/ceiling.py): its mode and spread against finite
differences, and importance samples that count for a shopper of many visits."""

import numpy as np
import pytest

from bench.ceiling import Shopper, _log_posterior, laplace, posterior

K = 8


def shopper(impressions: int, seed: int) -> tuple[Shopper, np.ndarray]:
    """A shopper with `impressions` impressions at about a 5 % purchase rate, and the
    categories' popularity."""
    rng = np.random.default_rng(seed)
    pop = rng.normal(0.0, 0.5, K)
    found = Shopper(
        cats=rng.integers(0, K, impressions).tolist(),
        rest=rng.normal(-3.0, 0.5, impressions).tolist(),
        bought=(rng.random(impressions) < 0.06).tolist(),
        arrives=rng.uniform(0.5, 1.0, impressions).tolist(),
        wants=rng.integers(0, max(2, impressions // 20), K).astype(float),
    )
    return found, pop


@pytest.mark.parametrize(
    "evidence", [{}, {"queries": False}, {"purchases": False}], ids=["both", "bought", "asked"]
)
def test_the_mode_and_spread_are_the_log_posteriors(evidence: dict[str, bool]) -> None:
    found, pop = shopper(400, 1)
    mode, cov = laplace(found, pop, **evidence)

    def f(t: np.ndarray) -> float:
        return _log_posterior(t, found, pop, **evidence)

    eps, unit = 1e-4, np.eye(K)
    slope = [(f(mode + eps * e) - f(mode - eps * e)) / (2 * eps) for e in unit]
    curvature = [
        [
            (
                f(mode + eps * (a + b))
                - f(mode + eps * (a - b))
                - f(mode - eps * (a - b))
                + f(mode - eps * (a + b))
            )
            / (4 * eps * eps)
            for b in unit
        ]
        for a in unit
    ]
    assert np.abs(slope).max() < 1e-5
    np.testing.assert_allclose(-np.linalg.inv(cov), curvature, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("impressions", [5, 400, 3000])
def test_samples_count_for_a_shopper_of_many_visits(impressions: int) -> None:
    # Drawn from the prior first, a shopper of thousands of impressions kept one sample
    # that counted of thousands.
    found, pop = shopper(impressions, 2)
    post = posterior(found, pop, np.random.default_rng(0), 4_000)
    assert post.ess() >= 4_000 / 4
    w = np.exp(post.log_w - post.log_w.max())
    mean = (w / w.sum()) @ post.samples
    mode, cov = laplace(found, pop)
    # The posterior mean is near the mode: a few of the Laplace spreads at most.
    assert np.all(np.abs(mean - mode) < 0.5 * np.sqrt(np.diag(cov)) + 0.05)
