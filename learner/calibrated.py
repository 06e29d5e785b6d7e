"""A classifier's chances put right by position: a logistic layer over the model's
log-odds and the position the item is shown at.

A leaf of a Hoeffding tree holds its share of purchases over the impressions that reached
it, at every position of the page. A tree splits on the position only where that gains
more than a split on a shopper's taste, which at this stream's weak position effect is
seldom, so it predicts about the page's average at the top of the page too, where a
storefront's candidates are scored: 0.65 to 0.74 of what sells there on the simulator
(docs/learner.md, "tree"). River's forest also learns every example at a weight of its own
drawing (online bagging) and drops the learner's sample weights, so the fake negatives'
importance weights never reach it. The layer learns both back: from each example, before
the model does, and at the learner's weight, sigmoid(a · logit(p) + b · position + c) by a
Bayesian logistic regression (learner/bayes.py). It starts as the model itself (a = 1,
b = c = 0), and with a > 0 keeps the model's ranking of candidates shown at one position.
"""

import math
from typing import Any, Final

from river import base

from learner.bayes import BayesianLogisticRegression

CLIP: Final = 1e-3
"""The model's chances are read within [CLIP, 1 - CLIP]: a leaf that has not seen a
purchase says 0, whose log-odds would make the layer's first steps huge."""

LAYER_VAR: Final = 0.1
"""The prior variance of the layer's three weights around the model itself. At 1.0 its
first examples swing it further: on four seeds the tree then ranked lower (held-out ratio
0.898 against 0.910 at 0.1), as calibrated (0.85 to 0.97 against 0.83 to 1.01)."""


class PositionCalibrated(base.Classifier):  # type: ignore[misc]
    """`model`, its chance of True calibrated by position (module docstring). `position`:
    the numeric feature that holds the position (learner/features.py: log1p of it)."""

    def __init__(
        self, model: base.Classifier, position: str = "log_position", drift_var: float = 1e-8
    ) -> None:
        self.model = model
        self.position = position
        self.drift_var = drift_var
        self.layer = BayesianLogisticRegression(LAYER_VAR, 0.0, drift_var)
        self.layer._weights["logit"] = 1.0

    def _inputs(self, x: dict[str, Any]) -> dict[str, float] | None:
        """The layer's inputs for `x`; None while the model has learned nothing (River's
        models then say nothing: an empty dict)."""
        proba = self.model.predict_proba_one(x)
        if not proba:
            return None
        p = min(max(float(proba.get(True, 0.0)), CLIP), 1.0 - CLIP)
        position = x.get(self.position)
        return {
            "logit": math.log(p / (1.0 - p)),
            "position": float(position) if isinstance(position, int | float) else 0.0,
        }

    def learn_one(self, x: dict[str, Any], y: bool, **kwargs: Any) -> None:
        inputs = self._inputs(x)
        if inputs is not None:
            self.layer.learn_one(inputs, y, kwargs.get("w", 1.0))
        self.model.learn_one(x, y, **kwargs)

    def predict_proba_one(self, x: dict[str, Any]) -> dict[bool, float]:
        inputs = self._inputs(x)
        if inputs is None:
            return {}
        proba: dict[bool, float] = self.layer.predict_proba_one(inputs)
        return proba
