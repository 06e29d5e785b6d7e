"""One named model of a shard, learning progressively: predict, score, then learn.

A logistic variant may serve an average of its recent weights instead of its learning
weights (learner/averaging.py): `predict`, what `learn` returns, and the published model
(`dumps_served`) are then the average's, while learning goes on with the learning weights.
"""

from collections.abc import Callable, Mapping
from typing import Any

from river import optim

from learner import modelcodec
from learner.averaging import WeightAverage
from learner.bayes import BayesianLogisticRegression
from learner.metrics import ProgressiveMetrics
from learner.models import logreg_parts
from learner.progressive import LogregStep

# What an untrained model (River returns {}) is taken to say: no preference.
UNINFORMED = 0.5


class Variant:
    """A model, the metrics of its own progressive validation, and how many examples it saw."""

    def __init__(
        self,
        name: str,
        kind: str,
        model: Any,
        metrics: ProgressiveMetrics,
        n_learned: int = 0,
        average: WeightAverage | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.model = model
        self.metrics = metrics
        self.n_learned = n_learned
        self.average = average if logreg_parts(model) is not None else None
        """What is served, when it is the average of the recent weights (logistic only)."""
        self._step: LogregStep | None = None
        self._stepped: Any = None
        """The model `_step` was made for: a rollback or a restore replaces `model`."""
        self._served: LogregStep | None = None
        """Predicts with the averaged weights; made again after each move of the average."""
        self._served_of: Any = None

    def learn(
        self,
        x: Mapping[str, float | str],
        y: bool,
        w: float | Callable[[float], float] = 1.0,
    ) -> float:
        """Score `x` with the model as it is, then learn it with weight `w` (or `w(p)` of
        that score, for weights that depend on the model's own estimate); return the score
        (P(True)). Nothing is scored into the metrics: the caller scores the prediction
        that was served (`score`), which may be an earlier one.
        """
        model = self.model
        if model is not self._stepped:
            self._step, self._stepped = LogregStep.of(model), model
        served = self._predict_served(x) if self.average is not None else None
        if served is not None and callable(w):
            # A weight from the model's own estimate (the fake negatives') takes the served
            # one: the positive learned when the purchase comes is weighted by what was
            # served (stored with the impression), and both must use the same estimate.
            w = w(served)
        if self._step is not None:
            proba = self._step.learn(x, y, w)
        else:
            proba = model.predict_proba_one(x)
            weight = w(p_true_of(proba)) if callable(w) else w
            model.learn_one(x, y, w=weight)
        self._learned()
        return served if served is not None else p_true_of(proba)

    def train(self, x: Mapping[str, float | str], y: bool, w: float = 1.0) -> None:
        """Learn `x` without scoring it first."""
        model = self.model
        if model is not self._stepped:
            self._step, self._stepped = LogregStep.of(model), model
        if self._step is not None:
            self._step.train(x, y, w)
        else:
            model.learn_one(x, y, w=w)
        self._learned()

    def _learned(self) -> None:
        self.n_learned += 1
        average = self.average
        if average is not None and average.due(self.n_learned):
            parts = logreg_parts(self.model)
            if parts is not None:
                average.update(parts[1])
                self._served = None

    def _predict_served(self, x: Mapping[str, float | str]) -> float | None:
        """P(True) of the averaged weights; None when the model is not a logistic one."""
        if self._served is None or self._served_of is not self.model:
            parts = logreg_parts(self.model)
            if parts is None or self.average is None:
                return None
            self._served = LogregStep(parts[0], self.average.served(parts[1]))
            self._served_of = self.model
        return p_true_of(self._served.predict(x))

    def restart_average(self) -> None:
        """Average from the current model on (another model was put in place)."""
        parts = logreg_parts(self.model)
        if self.average is not None and parts is not None:
            self.average.reset(parts[1])
        self._served = None

    def dumps_served(self) -> bytes:
        """The served model, serialized: the averaged weights in the learning pipeline."""
        parts = logreg_parts(self.model)
        if self.average is None or parts is None:
            return modelcodec.dumps(self.model)
        steps = self.model.steps
        name = next(reversed(steps))
        learning = steps[name]
        steps[name] = self.average.served(learning)
        try:
            return modelcodec.dumps(self.model)
        finally:
            steps[name] = learning

    def learning_state(self) -> tuple[WeightAverage, float, Any] | None:
        """What the served model (`dumps_served`) does not hold: the average's settings and
        count, and the learning intercept and weights; None when nothing is averaged."""
        parts = logreg_parts(self.model)
        if self.average is None or parts is None:
            return None
        average = WeightAverage(self.average.horizon, self.average.every, self.average.moves)
        return average, float(parts[1].intercept), parts[1]._weights

    @classmethod
    def restored(
        cls,
        name: str,
        kind: str,
        served: Any,
        metrics: ProgressiveMetrics,
        n_learned: int,
        learning: tuple[WeightAverage, float, Any] | None,
        horizon: int,
    ) -> "Variant":
        """The variant `dumps_served` and `learning_state` wrote, with the average over
        `horizon` learned examples (0: none) from now on."""
        parts = logreg_parts(served)
        average: WeightAverage | None = None
        if parts is not None and learning is not None:
            saved, intercept, weights = learning
            logreg = parts[1]
            averaged = WeightAverage(
                horizon,
                saved.every,
                saved.moves,
                float(logreg.intercept),
                logreg._weights.to_dict(),
            )
            logreg.intercept, logreg._weights = intercept, weights
            average = averaged if horizon else None
        elif parts is not None and horizon:
            average = WeightAverage(horizon)
            average.reset(parts[1])
        return cls(name, kind, served, metrics, n_learned, average)

    def adapt(self) -> bool:
        """Make the model take full-size steps again (after a drift); True if it keeps
        something to forget (AdaGrad's per-feature step sizes, the bayes optimizer's
        certainty), else nothing changes. The served average forgets the models of the
        old regime too: it starts again from the current one."""
        parts = logreg_parts(self.model)
        logreg = parts[1] if parts is not None else None
        optimizer = getattr(logreg, "optimizer", None)
        if isinstance(logreg, BayesianLogisticRegression):
            logreg.widen()
        elif isinstance(optimizer, optim.AdaGrad):
            optimizer.g2.clear()
        else:
            return False
        self.restart_average()
        return True

    def score(self, y: bool, p_true: float) -> None:
        """Count the prediction `p_true` that was served for an example labelled `y`."""
        self.metrics.update(y, p_true)

    def predict(self, x: Mapping[str, float | str]) -> float:
        """P(True) for `x` as served; a float even before the model has seen both classes."""
        if self.average is not None:
            served = self._predict_served(x)
            if served is not None:
                return served
        return p_true_of(self.model.predict_proba_one(x))

    # The model goes through modelcodec, so a plain pickle of a Variant (a snapshot, the
    # learner's committed state) is as compact as the codec makes it.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = modelcodec.dumps(self.model)
        del state["_step"], state["_stepped"], state["_served"], state["_served_of"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.setdefault("average", None)  # pickled before averaging existed
        state["model"] = modelcodec.loads(state["model"])
        self.__dict__.update(state)
        self._step, self._stepped = None, None
        self._served, self._served_of = None, None

    def __repr__(self) -> str:
        return f"Variant({self.name!r}, {self.kind!r}, n_learned={self.n_learned})"


def p_true_of(proba: Mapping[Any, float]) -> float:
    """P(True) from River's dict: 0.0 when only False was seen, 0.5 when nothing was."""
    if not proba:
        return UNINFORMED
    # Like River's metrics (`y_pred.get(True, 0.0)`); float() because River's sigmoid
    # returns the ints 0 and 1 beyond +-30.
    return float(proba.get(True, 0.0))
