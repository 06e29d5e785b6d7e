"""One named model of a shard, learning progressively: predict, score, then learn."""

from collections.abc import Mapping
from typing import Any

from learner import modelcodec
from learner.metrics import ProgressiveMetrics
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
    ) -> None:
        self.name = name
        self.kind = kind
        self.model = model
        self.metrics = metrics
        self.n_learned = n_learned
        self._step: LogregStep | None = None
        self._stepped: Any = None
        """The model `_step` was made for: a rollback or a restore replaces `model`."""

    def learn(self, x: Mapping[str, float | str], y: bool) -> float:
        """Score `x` with the model as it is, then learn it; return the score (P(True)).

        The same steps, in the same order, as River's `evaluate.progressive_val_score`, so
        the metrics equal its results: a model with nothing to say ({}) is not scored.
        """
        model = self.model
        if model is not self._stepped:
            self._step, self._stepped = LogregStep.of(model), model
        if self._step is not None:
            proba = self._step.learn(x, y)
        else:
            proba = model.predict_proba_one(x)
            model.learn_one(x, y)
        p_true = p_true_of(proba)
        if proba:
            # River's predict_one: the first most probable label.
            self.metrics.update(y, p_true, bool(max(proba, key=proba.__getitem__)))
        self.n_learned += 1
        return p_true

    def predict(self, x: Mapping[str, float | str]) -> float:
        """P(True) for `x`; a float even before the model has seen both classes."""
        return p_true_of(self.model.predict_proba_one(x))

    # The model goes through modelcodec, so a plain pickle of a Variant (a snapshot, the
    # learner's committed state) is as compact as the codec makes it.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = modelcodec.dumps(self.model)
        del state["_step"], state["_stepped"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["model"] = modelcodec.loads(state["model"])
        self.__dict__.update(state)
        self._step, self._stepped = None, None

    def __repr__(self) -> str:
        return f"Variant({self.name!r}, {self.kind!r}, n_learned={self.n_learned})"


def p_true_of(proba: Mapping[Any, float]) -> float:
    """P(True) from River's dict: 0.0 when only False was seen, 0.5 when nothing was."""
    if not proba:
        return UNINFORMED
    # Like River's metrics (`y_pred.get(True, 0.0)`); float() because River's sigmoid
    # returns the ints 0 and 1 beyond +-30.
    return float(proba.get(True, 0.0))
