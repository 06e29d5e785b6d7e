"""LinearScorer gives what River's predict_proba_one gives, for every row (to 1e-9)."""

import math
import numbers
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from river import compose, linear_model, preprocessing

from learner.columns import ByKey, rows_of
from learner.linear import LinearScorer
from learner.models import build_model
from tests.learner.test_models import CATEGORIES, NUMERIC, synthetic_stream

TOLERANCE = 1e-9


def river_scores(model: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([model.predict_proba_one(row)[True] for row in rows], dtype=np.float64)


def scorer_of(model: Any) -> LinearScorer:
    scorer = LinearScorer.from_model(model)
    assert scorer is not None
    return scorer


def assert_agree(model: Any, rows: list[dict[str, Any]]) -> None:
    got = scorer_of(model).score_many(rows)
    np.testing.assert_allclose(got, river_scores(model, rows), rtol=0, atol=TOLERANCE)


def trained(n: int = 3000, seed: int = 0, **params: object) -> Any:
    model = build_model("logreg", params)
    for x, y in synthetic_stream(n, seed=seed):
        model.learn_one(x, y)
    return model


def awkward_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Stream rows, each bent in one of the ways a live request can be."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for x, _ in synthetic_stream(n, seed=seed + 1):
        row: dict[str, Any] = dict(x)
        match rng.randrange(12):
            case 0:
                row.pop(rng.choice(NUMERIC), None)
            case 1:
                row[rng.choice(list(CATEGORIES))] = "never-seen"
            case 2:
                row["unseen_number"] = rng.uniform(-5, 5)
            case 3:
                row["price"] = "a string now"
            case 4:
                row["category"] = 3.0  # a number where a string was learned
            case 5:
                row["price"] = None
            case 6:
                row["position"] = True
            case 7:
                row["discount"] = 2  # an int
            case 8:
                row = {}
            case 9:
                row = {k: v for k, v in row.items() if isinstance(v, str)}
            case 10:
                row["device_mobile"] = 4.0  # a numeric feature named like a one-hot key
            case _:
                pass
        rows.append(row)
    return rows


def test_an_untrained_model_scores_one_half() -> None:
    model = build_model("logreg")
    rows = [{}, *awkward_rows(50, seed=1)]
    assert_agree(model, rows)
    assert set(scorer_of(model).score_many(rows).tolist()) == {0.5}


def test_it_agrees_with_river_on_the_stream() -> None:
    model = trained()
    assert_agree(model, [x for x, _ in synthetic_stream(1000, seed=5)])


def test_it_agrees_with_river_on_awkward_rows() -> None:
    """Unseen values and features, missing ones, changed types, None, bool, int, clashes."""
    assert_agree(trained(), awkward_rows(2000, seed=2))


@pytest.mark.parametrize(
    "params",
    [
        {"optimizer": "sgd", "lr": 0.5},
        {"optimizer": "adagrad", "l2": 0.01},
        {"optimizer": "sgd", "l1": 0.001},
        {"optimizer": "bayes", "one_hot_var": 1.0},
        {"optimizer": "adagrad", "lr": 0.1},
        {"optimizer": "adam", "lr": 0.05},
    ],
)
def test_it_agrees_whatever_the_optimizer(params: dict[str, object]) -> None:
    assert_agree(trained(2000, seed=3, **params), awkward_rows(500, seed=3))


def test_an_empty_batch_gives_an_empty_array() -> None:
    assert scorer_of(trained(100)).score_many([]).shape == (0,)


def test_extreme_logits_are_clamped_like_river() -> None:
    model = trained(200)
    logreg = model["LogisticRegression"]
    for sign in (1.0, -1.0):
        logreg.intercept = sign * 40.0
        rows = awkward_rows(50, seed=4)
        got = scorer_of(model).score_many(rows)
        assert got.tolist() == river_scores(model, rows).tolist()
        assert set(got.tolist()) == {1.0 if sign > 0 else 0.0}


@pytest.mark.parametrize("n", [3, 100])  # a few rows are scored in Python floats
def test_extreme_logits_of_some_columns_only_are_clamped_like_river(n: int) -> None:
    model = trained(200)
    logreg = model["LogisticRegression"]
    rows = [x for x, _ in synthetic_stream(n, seed=5)]
    columns: dict[str, Any] = {
        name: [row.get(name) for row in rows] for name in dict.fromkeys(k for r in rows for k in r)
    }
    # Half of the rows beyond +30, half not.
    p = river_scores(model, rows)
    logreg.intercept += 30.0 - float(np.median(np.log(p / (1 - p))))
    got = scorer_of(model).score_columns(columns, n)
    expected = river_scores(model, rows_of(columns, n))
    assert (expected == 1.0).any() and (expected < 1.0).any(), "some rows beyond 30, some not"
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    assert got[expected == 1.0].tolist() == [1.0] * int((expected == 1.0).sum())


def test_clashing_one_hot_keys_count_once_and_numbers_win() -> None:
    """Both "a"="b_c" and "a_b"="c" make "a_b_c"; a numeric "a_b_c" beats both."""
    model = build_model("logreg", {"lr": 0.3})
    stream = [
        ({"a": "b_c", "n": 1.0}, True),
        ({"a_b": "c", "n": 2.0}, False),
        ({"a_b_c": 1.5, "a": "x"}, True),
        ({"a_b_c": -0.5, "a_b": "c", "a": "b_c"}, False),
        ({"n": 0.0, "a": "b"}, True),
        ({"a_b": 2.0, "n": -1.0}, False),
    ] * 5
    for x, y in stream:
        model.learn_one(x, y)
    probes: list[dict[str, Any]] = [
        {"a": "b_c", "a_b": "c"},
        {"a": "b_c", "a_b": "c", "a_b_c": 3.0},
        {"a": "b_c", "a_b": "c", "a_b_c": None},
        {"a": "b", "a_b": 1.0},
        {"a": "b", "a_b": "x"},
        {"a_b_c": "z", "a": "b_c"},
    ]
    assert_agree(model, probes)


def test_non_finite_state_scores_like_river() -> None:
    """An infinite mean or a NaN weight: River's own arithmetic, row by row."""
    model = trained(500)
    union = next(iter(model.steps.values()))
    numeric = next(iter(union.transformers.values()))
    scaler = list(numeric.steps.values())[1]
    scaler.means["price"] = math.inf
    model["LogisticRegression"]._weights["discount"] = math.nan
    rows = awkward_rows(200, seed=6)
    got = scorer_of(model).score_many(rows)
    np.testing.assert_allclose(got, river_scores(model, rows), rtol=0, atol=TOLERANCE)
    assert np.isnan(got).any() and not np.isnan(got).all()
    assert ((got == 0.0) | (got == 1.0)).any()


@pytest.mark.parametrize(
    "model",
    [
        build_model("tree"),
        linear_model.LogisticRegression(),
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        compose.Pipeline(
            (compose.SelectType(float) | preprocessing.StandardScaler())
            + (compose.SelectType(str) | preprocessing.OneHotEncoder()),
            linear_model.LogisticRegression(),
        ),
        compose.Pipeline(
            (compose.SelectType(int) | preprocessing.StandardScaler())
            + (compose.SelectType(str) | preprocessing.OneHotEncoder(drop_first=True)),
            linear_model.LogisticRegression(),
        ),
    ],
)
def test_other_shapes_get_no_scorer(model: Any) -> None:
    assert LinearScorer.from_model(model) is None


def test_the_one_hot_encoder_that_keeps_zeros_is_served_too() -> None:
    """Explicit zeros change nothing in the dot product; the union's clash rule still holds."""
    model = compose.Pipeline(
        (compose.SelectType(numbers.Number) | preprocessing.StandardScaler())
        + (compose.SelectType(str) | preprocessing.OneHotEncoder()),
        linear_model.LogisticRegression(),
    )
    for x, y in synthetic_stream(1000, seed=10):
        model.learn_one(x, y)
    assert_agree(model, awkward_rows(500, seed=10))


def test_the_scorer_is_a_snapshot_of_its_model() -> None:
    model = trained(300)
    scorer = scorer_of(model)
    rows = [x for x, _ in synthetic_stream(50, seed=7)]
    before = river_scores(model, rows)
    for x, y in synthetic_stream(300, seed=8):
        model.learn_one(x, y)
    np.testing.assert_allclose(scorer.score_many(rows), before, rtol=0, atol=TOLERANCE)


# -- columns -----------------------------------------------------------------------


def test_columns_score_like_the_rows_they_describe() -> None:
    model = trained()
    rows = [x for x, _ in synthetic_stream(300, seed=9)]
    items = [{k: v for k, v in row.items() if k in ("price", "category")} for row in rows]
    columns: dict[str, Any] = {
        "device": "mobile",  # shared by every candidate
        "user_rate": 0.7,
        "position": np.arange(300, dtype=np.float64),
        "price": [row.get("price") for row in items],  # None where a row lacks it
        "category": np.array([row.get("category", "none") for row in items]),
        "page": ["search"] * 150 + ["home"] * 150,
        "absent": None,
    }
    expected = river_scores(model, rows_of(columns, 300))
    got = scorer_of(model).score_columns(columns, 300)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("n", [3, 300])
def test_keyed_columns_score_like_the_rows_they_describe(n: int) -> None:
    # What only a row's key decides (a candidate's category), as features_many gives it:
    # numeric and one-hot columns over one list of keys, and another over a second list.
    model = trained()
    rng = random.Random(n)
    cats = [rng.choice(CATEGORIES["category"] + ["never-seen"]) for _ in range(n)]
    pages = [rng.choice(CATEGORIES["page"]) for _ in range(n)]
    per_cat = {cat: rng.uniform(-2, 2) for cat in cats}
    columns: dict[str, Any] = {
        "category": ByKey(cats, {cat: cat for cat in cats}),
        "user_rate": ByKey(cats, per_cat),
        "item_ctr": ByKey(cats, {cat: rng.uniform(0, 1) for cat in cats}),
        "page": ByKey(pages, {page: page for page in pages}),
        "age_days": ByKey(pages, {page: float(len(page)) for page in pages}),
        "price": [rng.uniform(0, 50) for _ in range(n)],
        "device": "mobile",
    }
    expected = river_scores(model, rows_of(columns, n))
    got = scorer_of(model).score_columns(columns, n)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    # A keyed column of mixed values, or one whose name clashes, is read row by row.
    columns["device"] = ByKey(cats, {cat: 1.0 if cat == "cat1" else "x" for cat in cats})
    columns["category_cat1"] = ByKey(cats, {cat: 2.0 for cat in cats})
    expected = river_scores(model, rows_of(columns, n))
    got = scorer_of(model).score_columns(columns, n)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_a_keyed_column_reads_as_its_rows() -> None:
    column = ByKey(["b", "a", "b"], {"a": 1.0, "b": 2.0, "unused": 3.0})
    assert list(column) == column.rows() == [2.0, 1.0, 2.0]
    assert len(column) == 3 and column[1] == 1.0 and column[-1] == 2.0
    assert column == [2.0, 1.0, 2.0]
    np.testing.assert_array_equal(np.asarray(column), [2.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="price"):
        scorer_of(trained(100)).score_columns({"price": column}, 4)


def test_mixed_and_clashing_columns_still_agree() -> None:
    model = trained()
    columns: dict[str, Any] = {
        "device": ["mobile", 1.0, None, "tablet"],  # mixed: scored row by row
        "category_cat1": np.array([1.0, 2.0, 3.0, 4.0]),  # clashes with category=cat1
        "category": "cat1",
        "price": np.float64(3.0),
        "discount": np.array(True),
    }
    expected = river_scores(model, rows_of(columns, 4))
    got = scorer_of(model).score_columns(columns, 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_columns_of_the_wrong_length_or_shape_are_refused() -> None:
    scorer = scorer_of(trained(100))
    with pytest.raises(ValueError, match="price"):
        scorer.score_columns({"price": [1.0, 2.0]}, 3)
    with pytest.raises(ValueError, match="one-dimensional"):
        scorer.score_columns({"price": np.zeros((3, 2))}, 3)


# -- properties --------------------------------------------------------------------

# Names that clash once one-hot encoded ("a"="b_c" and "a_b"="c"), values on a coarse grid
# so that no variance is so small that River's and numpy's rounding orders differ by 1e-9.
NAMES = st.sampled_from(["a", "a_b", "a_b_c", "b", "price", "user_rate", "user"])
VALUES = st.one_of(
    st.sampled_from([-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 2.0, 10.0]),
    st.integers(-3, 3),
    st.booleans(),
    st.sampled_from(["b", "b_c", "c", "rate", "x", "new"]),
    st.none(),
)
ROWS = st.dictionaries(NAMES, VALUES, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(st.tuples(ROWS, st.booleans()), max_size=40),
    probes=st.lists(ROWS, min_size=1, max_size=20),
    lr=st.sampled_from([0.01, 0.3, 1.0]),
)
def test_any_model_and_any_row_agree(
    stream: list[tuple[dict[str, Any], bool]], probes: list[dict[str, Any]], lr: float
) -> None:
    model = build_model("logreg", {"lr": lr})
    for x, y in stream:
        model.learn_one(x, y)
    assert_agree(model, probes)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(st.tuples(ROWS, st.booleans()), max_size=30),
    n=st.integers(1, 8),
    data=st.data(),
)
def test_any_columns_agree_with_their_rows(
    stream: list[tuple[dict[str, Any], bool]], n: int, data: st.DataObject
) -> None:
    model = build_model("logreg", {"lr": 0.3})
    for x, y in stream:
        model.learn_one(x, y)
    # Keyed columns share one list of keys (as features_many's do) or have their own.
    shared_keys = data.draw(st.lists(st.sampled_from("xyz"), min_size=n, max_size=n))
    keys = st.one_of(st.just(shared_keys), st.lists(st.sampled_from("xyz"), min_size=n, max_size=n))
    keyed = st.builds(ByKey, keys, st.fixed_dictionaries({key: VALUES for key in "xyz"}))
    column = st.one_of(VALUES, st.lists(VALUES, min_size=n, max_size=n), keyed)
    columns = data.draw(st.dictionaries(NAMES, column, max_size=5))
    got = scorer_of(model).score_columns(columns, n)
    expected = river_scores(model, rows_of(columns, n))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
