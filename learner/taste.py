"""A shopper's taste for a category, as the most likely log-odds shift given what they did.

A prior N(0, PRIOR_SD^2) around the store's typical shopper, and two kinds of evidence,
each its own estimate (the model weighs them). A rate or a share says what the shopper
did; these say how far that moves what we believe of them, so two visits move it less
than twenty, and a category they were shown often and never bought is believed less
liked than one they were never shown.
"""

import math

PRIOR_SD = 0.8
_PRECISION = 1.0 / PRIOR_SD**2
_CATEGORIES_TYPICAL = 8.0
TYPICAL_BUY = 0.05
"""The chance a typical impression ends in a purchase, as `bought_mode` counts impressions."""
_BUY_TYPICAL_LOGIT = math.log(TYPICAL_BUY / (1.0 - TYPICAL_BUY))
_NEWTON_STEPS = 8
"""Newton steps from the prior's mean (each log-posterior is concave): eight end within
1e-9 of where sixty do, for up to 1,000 visits and 10,000 impressions of a category."""
_MAX_STEPS = 60
"""`bought_mode` goes on past _NEWTON_STEPS until a step moves less than 1e-12."""


def asked_mode(asked: float, visits: float) -> float:
    """Most likely taste shift given `asked` of `visits` query visits for the category.

    A visit with a query shows mostly the category asked for, which a shopper draws by
    taste (softmax): its visits against a share 1/_CATEGORIES_TYPICAL of all of them."""
    rate = visits / _CATEGORIES_TYPICAL
    t = 0.0
    for _ in range(_NEWTON_STEPS):
        expected = rate * math.exp(t)
        t += (asked - expected - t * _PRECISION) / (_PRECISION + expected)
    return t


def bought_mode(bought: float, shown: float) -> float:
    """Most likely taste shift given `bought` purchases of `shown` impressions, each
    bought with the chance sigmoid(taste + _BUY_TYPICAL_LOGIT), a typical impression's 5 %.

    Impressions are not all typical: one at the foot of a page, or of a category the visit
    did not ask for, is bought far less often, and not buying it says less. `shown` may be
    a number of typical impressions instead: the purchases the shopper's impressions were
    expected to bring (the served chances, summed) over TYPICAL_BUY. At a small rate the
    likelihood of the purchases depends on the impressions through that sum only."""
    # The mode lies where the log-posterior's slope, bought - shown·p - t/PRIOR_SD², is 0:
    # between (bought - shown)·PRIOR_SD² and bought·PRIOR_SD². With hundreds of purchases
    # plain Newton steps from 0 overshoot it and cycle or diverge (until exp() overflows).
    # Safeguarded as in Numerical Recipes' rtsafe: a step that leaves the bracket, or does
    # not at least halve the one before it, is replaced by the bracket's midpoint. Where
    # plain Newton converges it takes the same steps.
    lo, hi = (bought - shown) / _PRECISION, bought / _PRECISION
    t = 0.0 if lo <= 0.0 <= hi else 0.5 * (lo + hi)
    before = hi - lo
    for step in range(_MAX_STEPS):
        p = _sigmoid(t + _BUY_TYPICAL_LOGIT)
        slope = bought - shown * p - t * _PRECISION
        if slope > 0.0:
            lo = t
        else:
            hi = t
        new = t + slope / (_PRECISION + shown * p * (1.0 - p))
        if not lo <= new <= hi or abs(new - t) > 0.5 * before:
            new = 0.5 * (lo + hi)
        before, t = abs(new - t), new
        if before < 1e-12 and step + 1 >= _NEWTON_STEPS:
            break
    return t


def _sigmoid(z: float) -> float:
    # exp() of a large positive number overflows: the form for z < 0 takes exp(z) instead.
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
