"""The taste estimators find the mode of their posterior, whatever the counts."""

import math

import numpy as np
import pytest

from learner.taste import PRIOR_SD, bought_mode

BUY_TYPICAL_LOGIT = math.log(0.05 / 0.95)


def slope(bought: float, shown: float, t: float) -> float:
    """The log-posterior's derivative at t: zero at the mode."""
    z = t + BUY_TYPICAL_LOGIT
    p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return bought - shown * p - t / PRIOR_SD**2


@pytest.mark.parametrize(
    ("bought", "shown"),
    [(577.0, 1845.6), (582.75, 582.75), (30.0, 60.0), (1200.0, 3000.0), (5.0, 0.0)],
)
def test_many_purchases_find_the_mode_instead_of_overflowing(bought: float, shown: float) -> None:
    """Plain Newton steps from 0 cycled or overflowed exp() on these (hundreds of
    purchases of a category, as a shopper of a long stream has)."""
    t = bought_mode(bought, shown)
    assert abs(slope(bought, shown, t)) < 1e-9 * (1 + bought + shown)
    assert (bought - shown) * PRIOR_SD**2 <= t <= bought * PRIOR_SD**2


def test_the_mode_is_found_over_the_whole_range() -> None:
    for shown in np.geomspace(0.01, 20_000, 40):
        for bought in np.geomspace(0.01, 20_000, 40):
            t = bought_mode(float(bought), float(shown))
            assert abs(slope(bought, shown, t)) < 1e-9 * (1 + bought + shown), (bought, shown)


def test_no_evidence_leaves_the_prior() -> None:
    assert bought_mode(0.0, 0.0) == 0.0
