"""One named model of a shard, learning progressively: predict, score, then learn."""

from collections.abc import Callable, Mapping
from typing import Any

from river import optim

from learner import modelcodec
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
    ) -> None:
        self.name = name
        self.kind = kind
        self.model = model
        self.metrics = metrics
        self.n_learned = n_learned
        self._step: LogregStep | None = None
        self._stepped: Any = None
        """The model `_step` was made for: a rollback or a restore replaces `model`."""

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
        if self._step is not None:
            proba = self._step.learn(x, y, w)
        else:
            proba = model.predict_proba_one(x)
            weight = w(p_true_of(proba)) if callable(w) else w
            model.learn_one(x, y, w=weight)
        self.n_learned += 1
        return p_true_of(proba)

    def train(self, x: Mapping[str, float | str], y: bool, w: float = 1.0) -> None:
        """Learn `x` without scoring it first."""
        model = self.model
        if model is not self._stepped:
            self._step, self._stepped = LogregStep.of(model), model
        if self._step is not None:
            self._step.train(x, y, w)
        else:
            model.learn_one(x, y, w=w)
        self.n_learned += 1

    def adapt(self) -> bool:
        """Make the model's optimizer take full-size steps again (after a drift); True if
        it keeps per-feature step sizes to forget (AdaGrad), else nothing changes."""
        parts = logreg_parts(self.model)
        optimizer = getattr(parts[1], "optimizer", None) if parts is not None else None
        if not isinstance(optimizer, optim.AdaGrad):
            return False
        optimizer.g2.clear()
        return True

    def score(self, y: bool, p_true: float) -> None:
        """Count the prediction `p_true` that was served for an example labelled `y`."""
        self.metrics.update(y, p_true)

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
