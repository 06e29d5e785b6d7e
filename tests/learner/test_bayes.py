"""The bayes optimizer (learner/bayes.py): one pass of Laplace steps, what it learns and why."""

import math
import random

import numpy as np
import pytest
from river import linear_model

from learner.bayes import WIDEN, BayesianLogisticRegression
from learner.models import AdaGrad, build_model, logreg_parts
from tests.learner.test_models import synthetic_stream

TRUE = {"a": 1.0, "b": -0.5, "c": 0.25}
TRUE_INTERCEPT = -2.5


def logistic_stream(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    """Standardised numbers whose label follows TRUE: a 10 % positive rate or so."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {k: rng.gauss(0.0, 1.0) for k in TRUE}
        z = TRUE_INTERCEPT + sum(TRUE[k] * v for k, v in x.items())
        out.append((x, rng.random() < 1.0 / (1.0 + math.exp(-z))))
    return out


def batch_map(data: list[tuple[dict[str, float], bool]], prior_var: float) -> np.ndarray:
    """The most likely intercept and weights under the same Gaussian prior, by Newton's
    method over the whole batch."""
    x = np.array([[1.0, *(row[k] for k in TRUE)] for row, _ in data])
    y = np.array([float(label) for _, label in data])
    w = np.zeros(x.shape[1])
    for _ in range(30):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        gradient = x.T @ (y - p) - w / prior_var
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.eye(len(w)) / prior_var
        w += np.linalg.solve(hessian, gradient)
    return w


def test_one_pass_lands_where_a_batch_fit_with_the_same_prior_does() -> None:
    data = logistic_stream(20_000, seed=1)
    model = BayesianLogisticRegression(prior_var=1.0)
    for x, y in data:
        model.learn_one(x, y)
    learned = np.array([model.intercept, *(model.weights[k] for k in TRUE)])
    fitted = batch_map(data, prior_var=1.0)
    assert np.abs(learned - fitted).max() < 0.03, (learned, fitted)
    # And the batch fit is where the stream came from.
    assert np.abs(fitted - np.array([TRUE_INTERCEPT, *TRUE.values()])).max() < 0.1


def test_a_rare_one_hot_value_stays_near_zero_where_adagrad_pushes_it_down() -> None:
    """A value seen 100 times among 5,000 examples and bought at the store's rate: nothing
    sets it apart. AdaGrad's steps are full-size whatever the gradient, so a hundred small
    negative gradients move it as far as a hundred large ones; the belief moves it by what
    100 examples at a 5 % rate can tell."""
    rng = random.Random(2)
    bayes = BayesianLogisticRegression()
    adagrad = linear_model.LogisticRegression(optimizer=AdaGrad(0.05), intercept_lr=0.001)
    for i in range(5_000):
        x = {"page_search": 1, "device_mobile": 1}
        if i % 50 == 0:
            x["query_category_rare|yarn"] = 1
        y = rng.random() < 0.05
        bayes.learn_one(x, y)
        adagrad.learn_one(x, y)
    rare = "query_category_rare|yarn"
    assert abs(bayes.weights[rare]) < 0.1
    assert abs(adagrad.weights[rare]) > 3 * abs(bayes.weights[rare])
    # The base rate is learned either way.
    base = 1.0 / (1.0 + math.exp(-(bayes.intercept + bayes.weights["page_search"])))
    assert 0.035 < base < 0.07


def test_widen_forgets_most_of_the_certainty_and_keeps_the_weights() -> None:
    model = build_model("logreg")
    for x, y in synthetic_stream(3_000, seed=3):
        model.learn_one(x, y)
    parts = logreg_parts(model)
    assert parts is not None
    logreg = parts[1]
    keys = list(logreg._var)
    weights, narrowed = dict(logreg.weights), logreg._cov.copy()
    one_hot = logreg._one_hot_vars(keys)
    logreg.widen()
    assert dict(logreg.weights) == weights
    # WIDEN times as wide, but none wider than the prior (the rare numeric "size" would
    # be), and the correlations kept.
    widened = logreg._cov.diagonal()
    assert np.allclose(widened, np.minimum(narrowed.diagonal() * WIDEN, logreg.prior_var))
    assert widened.max() <= logreg.prior_var and widened.min() > 10 * narrowed.diagonal().min()
    scale = np.sqrt(widened / narrowed.diagonal())
    assert np.allclose(logreg._cov, narrowed * np.multiply.outer(scale, scale))
    assert logreg._one_hot_vars(keys) == pytest.approx(
        [min(v * WIDEN, logreg.one_hot_var) for v in one_hot]
    )
    # Widened again and again, the belief is the prior's width, still a covariance.
    for _ in range(5):
        logreg.widen()
    assert logreg._cov.diagonal() == pytest.approx(logreg.prior_var)
    assert np.linalg.eigvalsh(logreg._cov).min() > 0
    assert logreg._one_hot_vars(keys) == pytest.approx([logreg.one_hot_var] * len(keys))


def test_drift_var_keeps_the_belief_from_narrowing_forever() -> None:
    data = logistic_stream(30_000, seed=4)
    still, moving = BayesianLogisticRegression(), BayesianLogisticRegression(drift_var=1e-6)
    for x, y in data:
        still.learn_one(x, y)
        moving.learn_one(x, y)
    assert moving._cov[1, 1] > 5 * still._cov[1, 1]
    # Where the target moves, the one that keeps some doubt follows it.
    flipped = [({"a": -x["a"], "b": x["b"], "c": x["c"]}, y) for x, y in data[:10_000]]
    for x, y in flipped:
        still.learn_one(x, y)
        moving.learn_one(x, y)
    assert moving.weights["a"] < 0 < still.weights["a"]


def test_a_value_that_is_not_a_finite_number_teaches_nothing() -> None:
    model = BayesianLogisticRegression()
    for x, y in logistic_stream(200, seed=5):
        model.learn_one(x, y)
    before = (dict(model.weights), model.intercept, model._cov.copy())
    model.learn_one({"a": math.inf, "b": 1.0}, True)
    model.learn_one({"a": math.nan}, False)
    assert (dict(model.weights), model.intercept) == before[:2]
    assert (model._cov == before[2]).all()


def test_a_one_hot_weight_left_alone_regains_doubt_up_to_its_prior() -> None:
    model = BayesianLogisticRegression(drift_var=1e-7)
    rng = random.Random(6)
    for _ in range(5_000):
        model.learn_one({"page_search": 1, "brand_rare": 1}, rng.random() < 0.05)
    (settled,) = model._one_hot_vars(["brand_rare"])
    assert settled < 0.5 * model.one_hot_var
    for _ in range(1_000):
        model.learn_one({"page_search": 1}, rng.random() < 0.05)
    (later,) = model._one_hot_vars(["brand_rare"])
    assert later == pytest.approx(settled + 1_000 * 1e-7)
    for _ in range(80_000):
        model.learn_one({"page_search": 1}, rng.random() < 0.05)
    assert model._one_hot_vars(["brand_rare"]) == [model.one_hot_var]
