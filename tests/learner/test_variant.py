"""A variant predicts each example before it learns it, exactly as River's evaluator does;
its metrics score what it is told was served."""

import pickle
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from river import evaluate, linear_model, metrics, tree, utils

from learner import modelcodec
from learner.metrics import ProgressiveMetrics
from learner.models import MODEL_KINDS, build_model
from learner.variant import Variant, p_true_of
from tests.learner.test_metrics import brute_roc_auc
from tests.learner.test_models import synthetic_stream

WINDOW = 250
RIVER_METRICS: dict[str, type] = {"log_loss": metrics.LogLoss, "accuracy": metrics.Accuracy}


def fresh(kind: str) -> Variant:
    return Variant("v", kind, build_model(kind), ProgressiveMetrics(WINDOW))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_metrics_equal_progressive_val_score_to_the_last_digit(kind: str) -> None:
    data = synthetic_stream(3000, seed=11)
    variant = fresh(kind)
    for x, y in data:
        said = variant.model.predict_proba_one(x)
        p = variant.learn(x, y)
        if said:  # River's evaluator skips a model with nothing to say ({})
            variant.score(y, p)
    report = variant.metrics.report()
    for key, cls in RIVER_METRICS.items():
        cumulative = evaluate.progressive_val_score(data, build_model(kind), cls())
        rolling = evaluate.progressive_val_score(
            data, build_model(kind), utils.Rolling(cls, window_size=WINDOW)
        )
        assert report[key] == cumulative.get(), key
        assert report[f"rolling_{key}"] == rolling.get(), key
    assert variant.n_learned == len(data)
    scored = rivers_scores(data, build_model(kind))
    assert report["n"] == len(scored)
    assert report["rolling_roc_auc"] == pytest.approx(brute_roc_auc(scored[-WINDOW:]), abs=1e-12)
    exact, auc, error = brute_roc_auc(scored), report["roc_auc"], report["roc_auc_error"]
    assert exact is not None and isinstance(auc, float) and isinstance(error, float)
    assert abs(auc - exact) <= error <= 0.005


def rivers_scores(
    data: Iterable[tuple[Mapping[str, Any], bool]], model: Any
) -> list[tuple[bool, float]]:
    """(label, P(True)) of every example River's evaluator scores: predict, then learn."""
    out = []
    for x, y in data:
        proba = model.predict_proba_one(x)
        if proba:
            out.append((y, float(proba.get(True, 0.0))))
        model.learn_one(x, y)
    return out


def test_an_untrained_model_says_uninformed() -> None:
    variant = fresh("tree")
    x, y = synthetic_stream(1)[0]
    assert variant.learn(x, y) == 0.5
    assert variant.metrics.report()["n"] == 0
    assert variant.n_learned == 1


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_learn_returns_the_prediction_made_before_learning(kind: str) -> None:
    variant = fresh(kind)
    for x, y in synthetic_stream(500, seed=12):
        expected = variant.predict(x)
        assert variant.learn(x, y) == expected


@pytest.mark.parametrize("label", [True, False])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_model_that_saw_one_class_still_gives_a_float(kind: str, label: bool) -> None:
    variant = fresh(kind)
    for x, _ in synthetic_stream(20, seed=13):
        variant.learn(x, label)
    p = variant.predict(synthetic_stream(1, seed=14)[0][0])
    assert isinstance(p, float)
    assert (p > 0.5) == label


def test_p_true_reads_rivers_dicts() -> None:
    assert p_true_of({}) == 0.5
    assert p_true_of({True: 1.0}) == 1.0
    assert p_true_of({False: 1.0}) == 0.0
    clamped: dict[Any, Any] = {False: 1, True: 0}  # River's sigmoid beyond -30
    assert type(p_true_of(clamped)) is float


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_pickled_variant_continues_exactly(kind: str) -> None:
    data = synthetic_stream(4000, seed=15)
    original = fresh(kind)
    for x, y in data[:2000]:
        original.score(y, original.learn(x, y))
    copy = pickle.loads(pickle.dumps(original))
    assert (copy.name, copy.kind, copy.n_learned) == ("v", kind, 2000)
    assert copy.metrics.report() == original.metrics.report()
    for x, y in data[2000:]:
        p = original.learn(x, y)
        assert copy.learn(x, y) == p
        copy.score(y, p)
        original.score(y, p)
    assert copy.metrics.report() == original.metrics.report()
    assert copy.n_learned == original.n_learned


def test_a_pickled_variant_carries_the_compact_model() -> None:
    variant = fresh("tree")
    for x, y in synthetic_stream(8000, seed=16):
        variant.learn(x, y)
    pickled = len(pickle.dumps(variant))
    assert pickled < len(modelcodec.dumps(variant.model)) + 20_000
    assert pickled * 5 < len(pickle.dumps(variant.model))


def test_any_river_classifier_can_be_a_variant() -> None:
    for model in (linear_model.LogisticRegression(), tree.HoeffdingTreeClassifier()):
        variant = Variant("plain", "custom", model, ProgressiveMetrics(10))
        for x, y in synthetic_stream(50, seed=17):
            numeric = {k: v for k, v in x.items() if isinstance(v, float)}
            assert 0.0 <= variant.learn(numeric, y) <= 1.0
