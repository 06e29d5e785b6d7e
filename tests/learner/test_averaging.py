"""A logistic variant serves the exponential average of its recent weights
(learner/averaging.py): checked against River's own pipeline and an average computed here,
through serialization (the API's numpy path too) and through a restore."""

import pickle
from typing import Any

import pytest
from river import utils

from learner import modelcodec
from learner.averaging import EVERY, WeightAverage
from learner.bayes import BayesianLogisticRegression
from learner.linear import LinearScorer
from learner.metrics import ProgressiveMetrics
from learner.models import build_model, logreg_parts
from learner.variant import Variant
from tests.learner.test_models import synthetic_stream

HORIZON = 500


def fake_negative(p: float) -> float:
    return (1.0 - p) * (1.0 + p)


def averaged_variant() -> Variant:
    return Variant(
        "v",
        "logreg",
        build_model("logreg"),
        ProgressiveMetrics(100),
        average=WeightAverage(HORIZON),
    )


class Reference:
    """River's pipeline learning as it is told, and the average of its weights, kept here
    from the definition: every EVERY learned examples, each weight moves by
    max(EVERY / HORIZON, 2 / (moves + 1)) of its distance to the learning one."""

    def __init__(self) -> None:
        self.model = build_model("logreg")
        self.learned = 0
        self.moves = 0
        self.intercept = 0.0
        self.weights: dict[str, float] = {}

    @property
    def logreg(self) -> Any:
        parts = logreg_parts(self.model)
        assert parts is not None
        return parts[1]

    def served(self, x: dict[str, Any]) -> float:
        logreg = self.logreg
        saved = logreg.intercept, logreg._weights
        logreg.intercept, logreg._weights = self.intercept, utils.VectorDict(dict(self.weights))
        try:
            return float(self.model.predict_proba_one(x)[True])
        finally:
            logreg.intercept, logreg._weights = saved

    def learn(self, x: dict[str, Any], y: bool, w: float) -> None:
        self.model.learn_one(x, y, w=w)
        self.learned += 1
        if self.learned % EVERY == 0:
            self.moves += 1
            alpha = max(EVERY / HORIZON, 2 / (self.moves + 1))
            self.intercept += alpha * (self.logreg.intercept - self.intercept)
            for key, weight in self.logreg._weights.to_dict().items():
                old = self.weights.get(key, 0.0)
                self.weights[key] = old + alpha * (weight - old)


def test_served_predictions_and_weights_are_the_average_of_rivers_pipeline() -> None:
    """Learning with the fake negatives' weights from the served estimate, as the learner
    does: the learning weights are River's, the served ones their average, and every
    served prediction is River's pipeline's with the averaged weights."""
    variant, reference = averaged_variant(), Reference()
    for i, (x, y) in enumerate(synthetic_stream(2_000, seed=3)):
        served = reference.served(x)
        assert variant.predict(x) == pytest.approx(served, rel=1e-12, abs=1e-15)
        assert variant.learn(x, False, fake_negative) == pytest.approx(served, rel=1e-12)
        reference.learn(x, False, fake_negative(served))
        if y:
            variant.train(x, True, 1.0 + served)
            reference.learn(x, True, 1.0 + served)
        if i % 97 == 0:
            learning = logreg_parts(variant.model)
            assert learning is not None
            assert learning[1]._weights.to_dict() == reference.logreg._weights.to_dict()
    average = variant.average
    assert average is not None and average.moves == reference.moves > 10
    assert average.weights == pytest.approx(reference.weights, rel=1e-12)
    assert average.intercept == pytest.approx(reference.intercept, rel=1e-12)


def trained(n: int = 1_500, seed: int = 5) -> tuple[Variant, list[tuple[dict[str, Any], bool]]]:
    variant = averaged_variant()
    data = synthetic_stream(2 * n, seed=seed)
    for x, y in data[:n]:
        learn(variant, x, y)
    return variant, data[n:]


def learn(variant: Variant, x: dict[str, Any], y: bool) -> None:
    served = variant.learn(x, False, fake_negative)
    variant.metrics.update(y, served)
    if y:
        variant.train(x, True, 1.0 + served)


def test_the_published_model_scores_as_served_in_river_and_numpy() -> None:
    variant, rest = trained()
    learning = logreg_parts(variant.model)
    assert learning is not None
    before = learning[1]._weights.to_dict(), learning[1].intercept
    published = modelcodec.loads(variant.dumps_served())
    # Serializing the served model leaves the learning one as it was.
    assert (learning[1]._weights.to_dict(), learning[1].intercept) == before
    scorer = LinearScorer.from_model(published)
    assert scorer is not None
    rows = [x for x, _ in rest[:200]]
    served = [variant.predict(x) for x in rows]
    assert [float(published.predict_proba_one(x)[True]) for x in rows] == pytest.approx(
        served, rel=1e-12
    )
    assert scorer.score_many(rows).tolist() == pytest.approx(served, rel=1e-9)
    # It is not the learning model: that one predicts otherwise.
    assert [float(variant.model.predict_proba_one(x)[True]) for x in rows] != pytest.approx(
        served, rel=1e-6
    )


def restore(variant: Variant, horizon: int = HORIZON) -> Variant:
    """What the learner publishes and reads back: the served model and the learning state."""
    learning: Any = pickle.loads(pickle.dumps(variant.learning_state()))
    metrics = pickle.loads(pickle.dumps(variant.metrics))
    return Variant.restored(
        variant.name,
        variant.kind,
        modelcodec.loads(variant.dumps_served()),
        metrics,
        variant.n_learned,
        learning,
        horizon,
    )


def state_of(model: Any) -> tuple[Any, ...]:
    """Everything the logistic pipeline learns, by value (pickles of equal models can
    differ in which strings they share)."""
    parts = logreg_parts(model)
    assert parts is not None
    scaler, logreg = parts
    return (
        dict(scaler.counts),
        dict(scaler.means),
        dict(scaler.vars),
        logreg._weights.to_dict(),
        logreg.intercept,
        *(
            (logreg._cov.tolist(), dict(logreg._var), logreg._learned)
            if isinstance(logreg, BayesianLogisticRegression)
            else (dict(logreg.optimizer.g2), logreg.optimizer.n_iterations)
        ),
    )


def test_a_restored_variant_continues_as_one_that_never_stopped() -> None:
    # Stopped between two moves of the average, so the count must carry over too.
    never, rest = trained(n=1_537)
    restored = restore(never)
    for x, y in rest:
        learn(never, x, y)
        learn(restored, x, y)
    assert state_of(modelcodec.loads(restored.dumps_served())) == state_of(
        modelcodec.loads(never.dumps_served())
    )
    assert state_of(restored.model) == state_of(never.model)
    assert restored.average == never.average
    assert restored.metrics.report() == never.metrics.report()
    x = rest[0][0]
    assert restored.predict(x) == never.predict(x)


def test_restored_without_the_average_learns_on_from_the_learning_weights() -> None:
    """An operator who turns the average off gets the learning weights back, not the
    averaged ones that were published."""
    variant, _ = trained()
    plain = restore(variant, horizon=0)
    assert plain.average is None
    assert state_of(plain.model) == state_of(variant.model)


def test_state_from_before_the_average_starts_it_from_the_learning_weights() -> None:
    model = build_model("logreg")
    for x, y in synthetic_stream(500, seed=9):
        model.learn_one(x, y)
    restored = Variant.restored("v", "logreg", model, ProgressiveMetrics(10), 500, None, HORIZON)
    x = synthetic_stream(1, seed=10)[0][0]
    assert restored.predict(x) == float(model.predict_proba_one(x)[True])


@pytest.mark.parametrize("kind", ["tree", "fm"])
def test_other_kinds_serve_their_learning_model(kind: str) -> None:
    variant = Variant(
        "v", kind, build_model(kind), ProgressiveMetrics(10), average=WeightAverage(HORIZON)
    )
    assert variant.average is None
    assert variant.learning_state() is None


def test_a_rollback_restarts_the_average_from_the_model_put_in_place() -> None:
    variant, rest = trained()
    variant.model = modelcodec.loads(variant.dumps_served())  # the last known good, say
    variant.restart_average()
    x = rest[0][0]
    assert variant.predict(x) == float(variant.model.predict_proba_one(x)[True])


def test_a_drift_restarts_the_average_from_the_learning_model() -> None:
    """The guards' adapt (AdaGrad forgets its steps) makes the average forget the old
    regime's models as well."""
    variant, rest = trained()
    x = rest[0][0]
    assert variant.predict(x) != float(variant.model.predict_proba_one(x)[True])
    assert variant.adapt()
    assert variant.predict(x) == float(variant.model.predict_proba_one(x)[True])
