"""One progressive-validation step of the logistic pipeline, without the pipeline's plumbing.

`Variant.learn` scores an example and then learns it. Through River's `Pipeline` that
selects the numeric and the string features four times, merges two unions and walks
two plans: 27 µs an example here, against 10 µs for this step, which splits the
example once and hands River's own `StandardScaler` and `LogisticRegression` exactly
the dicts the pipeline would hand them (same keys, same order, same values), so every
weight, mean and probability is bit for bit River's:

- predict: the union puts the one-hot keys first (it merges its branches in reverse
  order), then the scaled numbers (scaled with the statistics before this example);
- learn: the scaler learns the numbers, then the union is computed again (with the
  updated statistics) and the regression learns it.

The scaler's three passes (scale, learn, scale again) run as one, in its own expressions.

`tests/learner/test_progressive.py` checks it against the pipeline on random examples.
"""

import numbers
from collections.abc import Callable, Mapping
from typing import Any

from learner.models import logreg_parts


class LogregStep:
    """Predict-then-learn on the parts of a "logreg" pipeline; see the module docstring."""

    __slots__ = ("_logreg", "_scaler")

    def __init__(self, scaler: Any, logreg: Any) -> None:
        self._scaler = scaler
        self._logreg = logreg

    @classmethod
    def of(cls, model: Any) -> "LogregStep | None":
        """The step for `model`, or None when it is not the pipeline "logreg" builds."""
        parts = logreg_parts(model)
        return cls(*parts) if parts is not None else None

    def predict(self, x: Mapping[str, Any]) -> dict[bool, float]:
        """River's `predict_proba_one(x)`, without learning (a last-known-good shadow)."""
        means, variances = self._scaler.means, self._scaler.vars
        scaled: dict[str, Any] = {}
        one_hot: dict[str, Any] = {}
        for k, v in x.items():
            cls = v.__class__
            if cls is float or (cls is not str and isinstance(v, numbers.Number)):
                var = variances[k]
                scaled[k] = (v - means[k]) / var**0.5 if var else 0.0
            elif cls is str or isinstance(v, str):
                one_hot[f"{k}_{v}"] = 1
        one_hot.update(scaled)
        proba: dict[bool, float] = self._logreg.predict_proba_one(one_hot)
        return proba

    def learn(
        self, x: Mapping[str, Any], y: bool, w: float | Callable[[float], float] = 1.0
    ) -> dict[bool, float]:
        """River's `predict_proba_one(x)` before learning, then `learn_one(x, y, w)`; a
        callable `w` is given that prediction's P(True) and returns the weight."""
        scored, learned = self._split(x, predict=True)
        proba: dict[bool, float] = self._logreg.predict_proba_one(scored)
        weight = w(float(proba.get(True, 0.0)) if proba else 0.5) if callable(w) else w
        self._logreg.learn_one(learned, y, weight)
        return proba

    def train(self, x: Mapping[str, Any], y: bool, w: float = 1.0) -> None:
        """River's `learn_one(x, y, w)`, without predicting first."""
        _, learned = self._split(x, predict=False)
        self._logreg.learn_one(learned, y, w)

    def _split(self, x: Mapping[str, Any], predict: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(what predict_proba_one is given, what learn_one is given); the scaler learns."""
        scaler = self._scaler
        counts, means, variances = scaler.counts, scaler.means, scaler.vars
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        one_hot: dict[str, Any] = {}
        for k, v in x.items():
            cls = v.__class__
            # SelectType(numbers.Number) and SelectType(str), decided by class first.
            if cls is float or (cls is not str and isinstance(v, numbers.Number)):
                # StandardScaler's transform_one, learn_one, transform_one, feature by
                # feature (each feature's statistics are its own), in its own expressions.
                var, mean = variances[k], means[k]
                if predict:
                    before[k] = (v - mean) / var**0.5 if var else 0.0
                n = counts[k] + 1
                counts[k] = n
                new_mean = means[k] = mean + (v - mean) / n
                var = variances[k] = var + ((v - mean) * (v - new_mean) - var) / n
                after[k] = (v - new_mean) / var**0.5 if var else 0.0
            elif cls is str or isinstance(v, str):
                # OneHotEncoder(drop_zeros=True): one key per string, value 1.
                one_hot[f"{k}_{v}"] = 1
        # The union merges its branches last to first: one-hot keys, then the numbers.
        scored = {**one_hot, **before} if predict else {}
        one_hot.update(after)
        return scored, one_hot


def predictor(model: Any) -> Callable[[Mapping[str, Any]], dict[Any, float]]:
    """`model.predict_proba_one`, through the logistic step when `model` is a "logreg"."""
    step = LogregStep.of(model)
    predict: Callable[[Mapping[str, Any]], dict[Any, float]] = (
        step.predict if step is not None else model.predict_proba_one
    )
    return predict
