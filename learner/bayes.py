"""Online Bayesian logistic regression: a Gaussian belief over the weights, narrowed by one
Laplace step (an extended Kalman filter's update) per learned example.

Each example moves the weights by a Newton step taken under the belief: a weight the
belief is sure of hardly moves, an uncertain one moves far. A weight seen often settles;
a weight seen rarely stays near its prior mean of 0. That is where one-hot weights of rare
values belong (a query crossed with a category seen a handful of times, a new brand).
AdaGrad gives such a weight full-size steps whatever the size of its gradients: a value
shown a hundred times without a purchase (at a 5 % purchase rate) has its weight pushed
down by 0.8 of log-odds at the shipped step, by 0.05 here, before a purchase can say
otherwise. The numeric features and the intercept, on in every example and correlated,
share a full covariance; each one-hot weight has a variance of its own (a block-diagonal
belief), so a step costs one matrix-vector product the size of the numeric features.

The recursion is the sequential form of a fit under a Gaussian prior, as used for click
and conversion prediction (AdPredictor, Graepel et al., ICML 2010, in its diagonal probit
form; Chapelle and Li, NIPS 2011, with the Laplace approximation): one pass lands close
to the batch fit of the same prior (tests/learner/test_bayes.py).

The served model is a River `LogisticRegression`: the weights and the intercept are its
`_weights` and `intercept`, so whatever scores a "logreg" pipeline (River, the API's numpy
scorer, the served average) scores this one unchanged. The belief beside them is read by
learning only.
"""

import math
from typing import Any

import numpy as np
from river import linear_model, optim

WIDEN = 100.0
"""How much wider a drift makes the belief. Back to the prior itself, the first examples
after a drift each moved the intercept by up to half a unit of log-odds and the level
overshot (calibration 1.46 on the simulator 5,000 records after its drift, and a second
alert for the loss that overshoot caused); a hundred times wider ranks the new regime as
well from 10,000 records after it on, calibrated (0.96 at 5,000): docs/learner.md, "The
bayes optimizer"."""


class BayesianLogisticRegression(linear_model.LogisticRegression):  # type: ignore[misc]
    """A LogisticRegression that learns by Laplace steps (module docstring).

    `prior_var`: the prior variance of the intercept and of each numeric weight (on
    standardised numbers); `one_hot_var`: of each one-hot weight, a key whose value is the
    integer 1 (River's OneHotEncoder; an integer 0, a one-hot that is off, is skipped).
    `drift_var`: added to every variance per learned example (a one-hot weight's never
    beyond its prior), so that the belief stops narrowing once its spread is about
    sqrt(drift_var / curvature) and keeps following a target that moves; 0: it narrows as
    1/n, as a batch fit of everything seen would.
    """

    def __init__(
        self, prior_var: float = 1.0, one_hot_var: float = 0.01, drift_var: float = 0.0
    ) -> None:
        # River's optimizer and intercept step are not used: the belief sets every step.
        super().__init__(optimizer=optim.SGD(0.0), intercept_lr=0.0)
        self.prior_var = prior_var
        self.one_hot_var = one_hot_var
        self.drift_var = drift_var
        self._rows: dict[Any, int] = {}
        """Row of each numeric weight in the covariance; row 0 is the intercept's."""
        self._order: list[Any] = []
        """The numeric keys in the order of their rows (from row 1)."""
        self._cov = np.full((1, 1), prior_var)
        self._var: dict[Any, float] = {}
        """Each learned one-hot weight's variance less drift_var times the examples learned
        when it was set: the variance now adds drift_var times the examples learned since
        (one dict, and no walk over the keys that are off)."""
        self._learned = 0

    def learn_one(self, x: dict[Any, Any], y: bool, w: float = 1.0) -> None:
        weights = self._weights
        get = weights.get
        numeric: list[Any] = []
        values: list[float] = []
        one_hot: list[Any] = []
        dot = float(self.intercept)
        for k, v in x.items():
            cls = v.__class__
            if cls is not float:
                if cls is int or cls is bool:
                    if v == 1:
                        one_hot.append(k)
                        dot += get(k, 0.0)
                        continue
                    if v == 0:
                        continue
                v = float(v)
            numeric.append(k)
            values.append(v)
            dot += get(k, 0.0) * v
        if not math.isfinite(dot):
            # A value (or a weight) that is not a finite number would spread through the
            # shared covariance to every numeric weight: nothing is learned from it.
            return
        if numeric == self._order:
            # The usual case: the same numbers as always, in the order of the rows.
            z = np.array([1.0, *values])
        else:
            rows = [0, *(self._row(k) for k in numeric)]
            z = np.zeros(len(self._cov))
            z[rows] = [1.0, *values]
        self._learned += 1
        own = self._one_hot_vars(one_hot)
        cov = self._cov
        if self.drift_var:
            cov.reshape(-1)[:: len(cov) + 1] += self.drift_var
        p = 1.0 / (1.0 + math.exp(-min(max(dot, -30.0), 30.0)))
        curvature = w * p * (1.0 - p)
        residual = w * ((1.0 if y else 0.0) - p)
        cz = cov @ z
        spread = 1.0 + curvature * (float(z @ cz) + sum(own))
        cov -= np.multiply.outer(cz * (curvature / spread), cz)
        step = (cz * (residual / spread)).tolist()
        self.intercept += step[0]
        rows_of = self._rows
        for k in numeric:
            weights[k] = get(k, 0.0) + step[rows_of[k]]
        variances, grown = self._var, self.drift_var * self._learned
        for k, var in zip(one_hot, own, strict=True):
            weights[k] = get(k, 0.0) + var * residual / spread
            variances[k] = var - var * var * curvature / spread - grown

    def widen(self) -> None:
        """Forget most of how sure the belief is (a drift): every variance WIDEN times as
        wide, none wider than its prior, the weights kept, so the next few thousand
        examples move them far."""
        # Each row and column scaled by its own factor (D·cov·D stays a covariance), so a
        # number seen rarely, still near its prior, does not hold the others back.
        variances = self._cov.diagonal()
        room = np.divide(
            self.prior_var, variances, out=np.full_like(variances, WIDEN), where=variances > 0
        )
        scale = np.sqrt(np.minimum(WIDEN, room))
        self._cov = self._cov * np.multiply.outer(scale, scale)
        cap, grown = self.one_hot_var, self.drift_var * self._learned
        self._var = {k: min((v + grown) * WIDEN, cap) - grown for k, v in self._var.items()}

    def _row(self, key: Any) -> int:
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = len(self._cov)
            self._order.append(key)
            grown = np.zeros((row + 1, row + 1))
            grown[:row, :row] = self._cov
            grown[row, row] = self.prior_var
            self._cov = grown
        return row

    def _one_hot_vars(self, keys: list[Any]) -> list[float]:
        """The variance of each one-hot key now: what it was set to, grown by drift_var for
        every example learned since, never wider than its prior."""
        prior, variances = self.one_hot_var, self._var
        grown = self.drift_var * self._learned
        return [min(variances.get(k, prior) + grown, prior) for k in keys]
