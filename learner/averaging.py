"""The served logistic model: an exponential average of the learning model's recent weights.

The learning model's weights take AdaGrad's steps, so every purchase kicks all the weights
that are on for nearly every example (device, page, category, the numeric features, the
intercept) in the same direction at once. Together they carry the model's level, and that
level random-walks: on the simulator, the mean prediction of one moment's model on fresh
requests moves by 10 to 15 % from one 2,500 records to the next while its ranking hardly
changes (docs/learner.md, "Learning quality"). Averaging the weights over the last
`horizon` learned examples (Polyak-Ruppert averaging, in its exponential form) keeps what
the recent models agree on and cancels most of that walk; the cost is a lag of about
`horizon` examples behind the learning model. (Measured with AdaGrad, the default then;
under the bayes optimizer, learner/bayes.py, the average changes the ranking no more, and
steadies the level a little: docs/learner.md, "The bayes optimizer".)

The learning model keeps learning with its own weights, each step River's; only the fake
negatives' f (learner/feedback.py) is the served estimate, for the negative and for the
positive that follows it alike. What is served (the published model, the predictions the
metrics score) is the same pipeline with the averaged weights and intercept in place of
the learning ones: the scaler's statistics are shared, so everything that scores a
published model (the API's numpy path, River's) scores the average without knowing it.

Deterministic: the average moves every `every` learned examples, counted by the variant,
so a learner restored from committed state continues it exactly as one that never stopped.
"""

import copy
from dataclasses import dataclass, field
from typing import Any

from river import utils

EVERY = 100
"""Learned examples between two moves of the average: each move walks every weight."""


@dataclass(slots=True)
class WeightAverage:
    """The averaged intercept and weights of one logistic model."""

    horizon: int
    """Learned examples the exponential average spans (its time constant)."""
    every: int = EVERY
    moves: int = 0
    """Moves so far. Until the exponential average's own step is the larger, the k-th move
    steps 2 / (k + 1): the average of every model seen so far, weighted by its rank
    (polynomial-decay averaging, Shamir and Zhang, ICML 2013). The served model then
    never mixes in the all-zero weights the learning model started from, and lags the
    fast early learning by a third of it rather than half."""
    intercept: float = 0.0
    weights: dict[Any, float] = field(default_factory=dict)
    """Averaged weight per feature key; a key the learning model gained since the last move
    counts from 0.0, where the learning model started it."""

    def due(self, n_learned: int) -> bool:
        return n_learned % self.every == 0

    def update(self, logreg: Any) -> None:
        """Move the average toward `logreg`'s intercept and weights now."""
        self.moves += 1
        alpha = max(self.every / self.horizon, 2.0 / (self.moves + 1))
        self.intercept += alpha * (float(logreg.intercept) - self.intercept)
        averaged = self.weights
        get = averaged.get
        for key, w in logreg._weights.items():
            old = get(key, 0.0)
            averaged[key] = old + alpha * (w - old)

    def reset(self, logreg: Any) -> None:
        """Start again from `logreg` alone (a rollback put another model in place)."""
        self.moves = 1
        self.intercept = float(logreg.intercept)
        self.weights = dict(logreg._weights.items())

    def served(self, logreg: Any) -> Any:
        """A LogisticRegression that predicts with the averaged intercept and weights and
        shares everything else with `logreg`; it sees later moves of the weights (not of
        the intercept: take a new one after each move)."""
        served = copy.copy(logreg)
        served.intercept = self.intercept
        served._weights = utils.VectorDict(self.weights)
        return served
