"""Model kinds by name: parameters, errors, and the inputs every pipeline must survive.

`synthetic_stream` lives here and the other learner tests import it: one seeded stream
that looks like the store's (numeric and categorical features, missing ones, unseen
values, a feature that changes type).
"""

import math
import random
from typing import Any

import pytest

from learner.errors import ModelError
from learner.models import MODEL_KINDS, build_model, model_params

Features = dict[str, float | str]

CATEGORIES = {
    "category": [f"cat{i}" for i in range(8)],
    "device": ["mobile", "desktop", "tablet"],
    "page": ["search", "home", "item", "cart"],
}
NUMERIC = ("price", "position", "user_rate", "item_ctr", "age_days", "discount")


def synthetic_stream(n: int, seed: int = 0) -> list[tuple[Features, bool]]:
    """`n` examples whose label follows a logistic function of the features."""
    rng = random.Random(seed)
    weight = {name: rng.gauss(0, 1) for name in NUMERIC}
    effect = {f"{k}={v}": rng.gauss(0, 1) for k, values in CATEGORIES.items() for v in values}
    out: list[tuple[Features, bool]] = []
    for _ in range(n):
        x: Features = {name: rng.gauss(0, 1) * (i + 1) + i for i, name in enumerate(NUMERIC)}
        z = sum(weight[k] * (float(x[k]) - i) / (i + 1) for i, k in enumerate(NUMERIC))
        for name, values in CATEGORIES.items():
            value = rng.choice(values)
            z += effect[f"{name}={value}"]
            x[name] = value if rng.random() > 0.02 else f"new{rng.randrange(1000)}"
        if rng.random() < 0.05:
            del x[rng.choice([*NUMERIC, *CATEGORIES])]
        # A producer's feature that is sometimes a number and sometimes a string.
        if rng.random() < 0.1:
            x["size"] = rng.choice(["S", "M", "L"]) if rng.random() < 0.5 else rng.random()
        out.append((x, rng.random() < 1 / (1 + math.exp(-z))))
    return out


def test_the_kinds_are_logreg_tree_and_fm() -> None:
    assert set(MODEL_KINDS) >= {"logreg", "tree", "fm"}


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ModelError) as caught:
        build_model("forest")
    for kind in MODEL_KINDS:
        assert kind in str(caught.value)


def test_an_unknown_parameter_names_the_known_ones() -> None:
    known = r"known: drift_var, intercept_lr, l1, l2, lr, one_hot_var, optimizer, prior_var"
    with pytest.raises(ModelError, match=rf"learning_rate.*{known}"):
        build_model("logreg", {"learning_rate": 0.1})


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("logreg", {"lr": "fast"}),
        ("logreg", {"lr": True}),
        ("logreg", {"lr": -0.1}),
        ("logreg", {"l2": math.inf}),
        ("logreg", {"l2": math.nan}),
        ("logreg", {"optimizer": "lbfgs"}),
        ("logreg", {"l1": 0.1, "l2": 0.1}),
        # The bayes optimizer's prior is its regularisation.
        ("logreg", {"l2": 0.01}),
        ("logreg", {"optimizer": "bayes", "l1": 0.001}),
        ("logreg", {"prior_var": -1.0}),
        ("logreg", {"one_hot_var": "wide"}),
        ("tree", {"max_depth": 2.5}),
        ("tree", {"max_depth": 0}),
        ("tree", {"grace_period": None}),
        ("tree", {"leaf_prediction": "vote"}),
        ("tree", {"n_models": 0}),
        ("fm", {"n_factors": 0}),
        ("fm", {"buckets": -1}),
        ("fm", {"buckets": 2.5}),
        ("fm", {"init_std": -0.1}),
        ("fm", {"seed": "x"}),
    ],
)
def test_bad_parameters_are_model_errors(kind: str, params: dict[str, object]) -> None:
    with pytest.raises(ModelError):
        build_model(kind, params)


def test_parameters_reach_river() -> None:
    logreg = build_model("logreg", {"lr": 0.2, "l2": 0.001, "optimizer": "adagrad"})
    final = logreg["LogisticRegression"]
    assert type(final.optimizer).__name__ == "AdaGrad"
    assert final.optimizer.learning_rate == 0.2
    assert final.l2 == 0.001
    tree = build_model("tree", {"max_depth": 5.0, "grace_period": 20})["PositionCalibrated"].model
    assert (tree.max_depth, tree.grace_period, tree.n_models) == (5, 20, 3)
    assert isinstance(tree.max_depth, int)
    assert tree.binary_split and tree.leaf_prediction == "mc"
    fm = build_model("fm", {"n_factors": 3, "latent_lr": 0.2, "buckets": 0})["FMClassifier"]
    assert (fm.n_factors, fm.latent_optimizer.learning_rate) == (3, 0.2)


def test_defaults_are_listed_and_used() -> None:
    for kind in MODEL_KINDS:
        assert build_model(kind, model_params(kind)) is not None
    assert model_params("tree")["max_depth"] == 8


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_kind_learns_the_stream_without_errors(kind: str) -> None:
    """Missing features, unseen values, None and a type-switching feature included."""
    model = build_model(kind)
    for x, y in synthetic_stream(1500, seed=1):
        model.learn_one(x, y)
    odd: list[dict[str, Any]] = [
        {},
        {"size": "XL", "price": None, "brand": "never-seen"},
        {"size": 3.5, "category": 7.0, "unknown_number": 1e6},
    ]
    for x in odd:
        proba = model.predict_proba_one(x)
        assert 0.0 <= proba[True] <= 1.0
        model.learn_one(x, True)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_kind_learns_something(kind: str) -> None:
    data = synthetic_stream(6000, seed=2)
    model = build_model(kind)
    for x, y in data[:5000]:
        model.learn_one(x, y)
    hits = sum((model.predict_proba_one(x)[True] > 0.5) == y for x, y in data[5000:])
    base = max(sum(y for _, y in data[5000:]), sum(not y for _, y in data[5000:]))
    assert hits > base
