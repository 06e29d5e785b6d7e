"""FMScorer gives what the factorization machine's predict_proba_one gives (to 1e-9).

On simulator candidates (the learner's features after a simulator stream, the API's
columns of held-out requests), with unseen values and features, missing fields, strings
one-hot encoded without a hasher, two strings in one hash bucket, and columns whose
types vary from row to row.
"""

from typing import Any

import numpy as np
import pytest
from river import compose, facto, optim, preprocessing

from bench.quality_baselines import replay
from headrace.sim.simulator import SimulatorConfig, generate
from learner.columns import rows_of
from learner.factorization import FMClassifier
from learner.features import FeatureColumns, FeatureConfig, ItemColumns, features_many
from learner.fmscorer import FMScorer
from learner.models import SelectNumbers, SelectStrings, build_model, fm_parts
from tests.heldout import held_out
from tests.learner.test_models import synthetic_stream

TOLERANCE = 1e-9
CONFIG = SimulatorConfig(seed=4, count=8_000, n_users=150, n_items=80)


def river_scores(model: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([model.predict_proba_one(row)[True] for row in rows], dtype=np.float64)


def scorer_of(model: Any) -> FMScorer:
    scorer = FMScorer.from_model(model)
    assert scorer is not None
    return scorer


def assert_columns_agree(model: Any, columns: FeatureColumns, n: int) -> np.ndarray:
    got = scorer_of(model).score_columns(columns, n)
    want = river_scores(model, rows_of(columns, n))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    return want


class Simulated:
    """A simulator stream replayed into the learner's features, and held-out requests as
    the API's columns, from the aggregates at the end of the stream."""

    def __init__(self) -> None:
        records = list(generate(CONFIG))
        self.config = FeatureConfig()
        self.examples, self.users, self.items, self.store = replay(
            records, self.config, build_model("logreg")
        )
        self.at = records[-1].ts_ms / 1000
        self.requests = held_out(CONFIG, 25, k=40).requests

    def trained(self, **params: object) -> Any:
        model = build_model("fm", params)
        for x, y in self.examples:
            model.learn_one(x, y)
        return model

    def columns(self) -> list[tuple[dict[str, Any], int]]:
        out: list[tuple[dict[str, Any], int]] = []
        for request in self.requests:
            items = [c.item for c in request.candidates]
            aggs = ItemColumns.of([self.items.get(c.item_id, {}) for c in request.candidates])
            user = self.users.get(request.user_id, {})
            columns = features_many(
                request.context, items, user, aggs, self.at, self.config, self.store
            )
            out.append((dict(columns), len(items)))
        return out


@pytest.fixture(scope="module")
def sim() -> Simulated:
    return Simulated()


@pytest.fixture(scope="module")
def hashed(sim: Simulated) -> Any:
    """What the "fm" kind builds: strings hashed into buckets."""
    return sim.trained()


@pytest.fixture(scope="module")
def one_hot(sim: Simulated) -> Any:
    """ "fm" without a hasher: the classifier one-hot encodes the strings itself."""
    return sim.trained(buckets=0)


@pytest.mark.parametrize("kind", ["hashed", "one_hot"])
def test_simulator_candidates_score_like_river(
    sim: Simulated, kind: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(kind)
    for columns, n in sim.columns():
        want = assert_columns_agree(model, columns, n)
        assert np.ptp(want) > 0
        # The API's columns take the numpy path, not the model's row by row.
        assert scorer_of(model)._fast(columns, n) is not None


def test_the_pairwise_term_moves_the_scores_beyond_the_tolerance(
    sim: Simulated, hashed: Any
) -> None:
    """Without its latents the scorer is off by far more than the tolerance: the
    agreement above is the interactions', not only the linear part's."""
    flat = scorer_of(hashed)
    flat._norms[:] = 0.0
    flat._v[:] = 0.0
    columns, n = sim.columns()[0]
    want = river_scores(hashed, rows_of(columns, n))
    assert np.abs(flat.score_columns(columns, n) - want).max() > 1e-3


@pytest.mark.parametrize("kind", ["hashed", "one_hot"])
def test_unseen_values_and_features_score_like_river(
    sim: Simulated, kind: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(kind)
    columns, n = sim.columns()[1]
    bent: dict[str, Any] = dict(columns)
    bent["device"] = "a device never seen"
    bent["category"] = [f"new-{i % 3}" if i % 2 else c for i, c in enumerate(columns["category"])]
    bent["a_number_never_seen"] = [float(i) for i in range(n)]
    bent["a_string_never_seen"] = "x"
    bent["price"] = [p * 40 for p in columns["price"]]  # far outside what was learned
    assert_columns_agree(model, bent, n)


@pytest.mark.parametrize("kind", ["hashed", "one_hot"])
def test_missing_fields_score_like_river(
    sim: Simulated, kind: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(kind)
    columns, n = sim.columns()[2]
    gaps: dict[str, Any] = dict(columns)
    gaps["price"] = [None if i % 3 == 0 else p for i, p in enumerate(columns["price"])]
    gaps["brand"] = [None if i % 4 == 1 else b for i, b in enumerate(columns["brand"])]
    gaps["u_ctr"] = None  # the whole column absent
    del gaps["log_price"]
    assert_columns_agree(model, gaps, n)
    # The same rows, as rows: each lacks what its column left out.
    rows = rows_of(gaps, n)
    got = scorer_of(model).score_many(rows)
    np.testing.assert_allclose(got, river_scores(model, rows), rtol=0, atol=TOLERANCE)


def test_two_strings_in_one_bucket_count_as_one_feature_of_two(sim: Simulated, hashed: Any) -> None:
    """River adds the values of a bucket: such rows are not two features of value 1."""
    parts = fm_parts(hashed)
    assert parts is not None
    _, hasher, fm = parts
    assert hasher is not None
    columns, n = sim.columns()[3]
    category = columns["category"][0]
    (bucket,) = hasher.transform_one({"category": category})
    assert bucket in fm.latents
    twin = next(
        value
        for value in (f"v{i}" for i in range(1_000_000))
        if bucket in hasher.transform_one({"twin": value})
    )
    clashing: dict[str, Any] = dict(columns)
    clashing["twin"] = twin  # in every row; in category's bucket where category matches
    assert columns["category"].count(category) >= 1
    assert_columns_agree(hashed, clashing, n)


@pytest.mark.parametrize("signed", [True, False])
def test_a_small_hasher_collides_often_and_still_agrees(signed: bool) -> None:
    model = compose.Pipeline(
        (SelectNumbers() | preprocessing.StandardScaler())
        + (
            SelectStrings()
            | preprocessing.FeatureHasher(n_features=8, seed=3, alternate_sign=signed)
        ),
        FMClassifier(n_factors=5, latent_optimizer=optim.SGD(0.05), seed=2),
    )
    data = synthetic_stream(2000, seed=6)
    for x, y in data:
        model.learn_one(x, y)
    # Rows with every feature and without "size" (a string in some rows, a number in
    # others): columns of one type each, scored by numpy but for the rows with a clash.
    full = [x for x, _ in data[:400] if len(x) == 9 and "size" not in x]
    columns: dict[str, Any] = {name: [x[name] for x in full] for name in full[0]}
    want = assert_columns_agree(model, columns, len(full))
    assert len(want) > 200
    got = scorer_of(model).score_many(full)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


def test_columns_of_varying_types_and_clashing_names_still_agree(one_hot: Any) -> None:
    n = 6
    columns: dict[str, Any] = {
        "size": ["S", 1.5, None, "M", 2.0, "L"],  # a string in some rows, a number in others
        "category": "yarn",
        "price": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
    assert_columns_agree(one_hot, columns, n)
    # Without a hasher "a"="b_c" and "a_b"="c" are one key, and a number named so too.
    clash: dict[str, Any] = {"a": "b_c", "a_b": "c", "a_b_c": [0.5] * n, "price": 3.0}
    assert_columns_agree(one_hot, clash, n)


def test_an_untrained_model_scores_one_half() -> None:
    model = build_model("fm")
    rows = [x for x, _ in synthetic_stream(50, seed=1)]
    assert scorer_of(model).score_many(rows).tolist() == [0.5] * 50
    assert scorer_of(model).score_many([]).shape == (0,)


@pytest.mark.parametrize(
    "model",
    [
        build_model("logreg"),
        build_model("tree"),
        # River's own classifier draws a latent for an unseen feature when it predicts.
        compose.Pipeline(SelectNumbers() | preprocessing.StandardScaler(), facto.FMClassifier()),
        compose.Pipeline(
            (SelectNumbers() | preprocessing.StandardScaler()) + SelectStrings(),
            FMClassifier(sample_normalization=True),
        ),
    ],
)
def test_other_shapes_get_no_scorer(model: Any) -> None:
    assert FMScorer.from_model(model) is None
