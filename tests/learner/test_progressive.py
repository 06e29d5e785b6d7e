"""The logistic step learns bit for bit as River's pipeline does, on any feature dicts."""

import numbers
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from river import compose, linear_model, optim, preprocessing

from learner.metrics import ProgressiveMetrics
from learner.models import build_model, logreg_parts
from learner.progressive import LogregStep, predictor
from learner.variant import Variant

# Names shared between numeric and string values, a clash between a number's name and a
# one-hot key ("c_a"), bools and ints (numbers to River), None (neither branch selects it).
NAMES = ["n1", "n2", "c", "c_a", "flag"]
VALUES = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-5, max_value=5),
    st.booleans(),
    st.sampled_from(["a", "b", "é", ""]),
    st.none(),
)
STREAMS = st.lists(
    st.tuples(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=5), st.booleans()),
    min_size=1,
    max_size=60,
)


def river_stock(optimizer: Any) -> Any:
    """The "logreg" pipeline with River's own selectors and the given optimizer."""
    return compose.Pipeline(
        (compose.SelectType(numbers.Number) | preprocessing.StandardScaler())
        + (compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True)),
        linear_model.LogisticRegression(optimizer=optimizer, intercept_lr=0.01),
    )


def state(model: Any) -> tuple[Any, ...]:
    parts = logreg_parts(model)
    assert parts is not None
    scaler, logreg = parts
    return (
        list(scaler.counts.items()),
        list(scaler.means.items()),
        list(scaler.vars.items()),
        list(logreg.weights.items()),
        logreg.intercept,
    )


@settings(max_examples=200, deadline=None)
@given(STREAMS, st.sampled_from(["sgd", "adam", "l2"]))
def test_step_equals_predict_then_learn_through_the_pipeline(
    stream: list[tuple[dict[str, Any], bool]], flavour: str
) -> None:
    def make() -> Any:
        if flavour == "l2":
            return build_model("logreg", {"optimizer": "adagrad", "l2": 0.01})
        return river_stock(optim.Adam(0.01) if flavour == "adam" else optim.SGD(0.01))

    reference, stepped = make(), make()
    step = LogregStep.of(stepped)
    assert step is not None
    for x, y in stream:
        expected = reference.predict_proba_one(x)
        reference.learn_one(x, y)
        assert step.learn(x, y) == expected
    # Same values in the same order: what is published and snapshotted is identical too.
    assert state(stepped) == state(reference)


@settings(max_examples=100, deadline=None)
@given(STREAMS, st.sampled_from(["sgd", "adagrad", "bayes"]))
def test_weighted_steps_equal_the_pipeline_with_the_same_weights(
    stream: list[tuple[dict[str, Any], bool]], flavour: str
) -> None:
    """Delayed-feedback methods learn with weights, some from the model's own estimate
    (fake negatives), some without predicting first (the window's close)."""
    reference = build_model("logreg", {"optimizer": flavour})
    stepped = build_model("logreg", {"optimizer": flavour})
    step = LogregStep.of(stepped)
    assert step is not None
    for i, (x, y) in enumerate(stream):
        if i % 3 == 0:
            step.train(x, y, 1.5)
            reference.learn_one(x, y, w=1.5)
            continue
        expected = reference.predict_proba_one(x)
        p = expected.get(True, 0.0) if expected else 0.5
        reference.learn_one(x, y, w=(1 - p) * (1 + p))
        assert step.learn(x, y, lambda q: (1 - q) * (1 + q)) == expected
    assert state(stepped) == state(reference)


@settings(max_examples=100, deadline=None)
@given(STREAMS, STREAMS)
def test_predict_equals_the_pipelines_prediction_and_leaves_the_same_state(
    learned: list[tuple[dict[str, Any], bool]], scored: list[tuple[dict[str, Any], bool]]
) -> None:
    """A last-known-good shadow is scored on every example and never learns."""
    reference, shadow = build_model("logreg"), build_model("logreg")
    for x, y in learned:
        reference.learn_one(x, y)
        shadow.learn_one(x, y)
    predict = predictor(shadow)
    for x, _ in scored:
        assert predict(x) == reference.predict_proba_one(x)
    # River's scaler records a feature first seen in a prediction (variance 0.0): so does this.
    assert state(shadow) == state(reference)


def test_other_pipelines_keep_rivers_own_path() -> None:
    assert LogregStep.of(build_model("tree")) is None
    scaled_only = compose.Pipeline(
        preprocessing.StandardScaler(), linear_model.LogisticRegression()
    )
    assert LogregStep.of(scaled_only) is None
    tree = build_model("tree")
    assert predictor(tree) == tree.predict_proba_one


def test_a_variant_follows_its_model_when_it_is_replaced() -> None:
    """A rollback or a restore swaps the model: the step must learn into the new one."""
    variant = Variant("v", "logreg", build_model("logreg"), ProgressiveMetrics(10))
    variant.learn({"n1": 1.0, "c": "a"}, True)
    replacement = build_model("logreg")
    variant.model = replacement
    variant.learn({"n1": 2.0, "c": "b"}, False)
    parts = logreg_parts(replacement)
    assert parts is not None
    assert parts[0].counts["n1"] == 1
    assert set(parts[1].weights) == {"c_b", "n1"}
