"""The codec's contract, for every model kind: a loaded model is the model that was dumped.

Like River's `check_estimator`, one list of checks runs over every kind in MODEL_KINDS:
identical predictions right after the round trip, and still identical after both copies
learn the same further examples (a learner restored from a snapshot behaves exactly like
one that never stopped).
"""

import gc
import pickle
import random
import zlib
from typing import Any

import pytest
from river import proba
from river.tree.utils import calculate_object_size

from learner import modelcodec
from learner.errors import StateError
from learner.models import MODEL_KINDS, build_model, model_params
from tests.learner.test_models import NUMERIC, Features, synthetic_stream

PROBE = [x for x, _ in synthetic_stream(400, seed=99)]


def predictions(model: Any, rows: list[Features]) -> list[dict[Any, float]]:
    return [model.predict_proba_one(x) for x in rows]


def trained(kind: str, n: int, seed: int = 0, **params: object) -> Any:
    model = build_model(kind, params)
    for x, y in synthetic_stream(n, seed=seed):
        model.learn_one(x, y)
    return model


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_round_trip_predicts_and_learns_exactly_like_the_original(kind: str) -> None:
    original = trained(kind, 4000, seed=1)
    restored = modelcodec.loads(modelcodec.dumps(original))
    assert predictions(restored, PROBE) == predictions(original, PROBE)
    # Enough further examples for the tree to split again after the restore.
    for x, y in synthetic_stream(4000, seed=2):
        original.learn_one(x, y)
        restored.learn_one(x, y)
    assert predictions(restored, PROBE) == predictions(original, PROBE)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_an_untrained_model_round_trips(kind: str) -> None:
    model = build_model(kind)
    restored = modelcodec.loads(modelcodec.dumps(model))
    assert predictions(restored, PROBE[:20]) == predictions(model, PROBE[:20])
    for x, y in synthetic_stream(300, seed=3):
        model.learn_one(x, y)
        restored.learn_one(x, y)
    assert predictions(restored, PROBE) == predictions(model, PROBE)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_round_trip_leaves_the_original_untouched(kind: str) -> None:
    model = trained(kind, 1000)
    before = predictions(model, PROBE)
    modelcodec.dumps(model)
    assert predictions(model, PROBE) == before


def trees(model: Any) -> list[Any]:
    """The forest's member trees, and the background trees that may replace them."""
    forest = model["PositionCalibrated"].model
    return [*forest.models, *(t for t in forest._background if t is not None)]


def test_the_tree_saves_no_random_generator_state_but_its_seeded_own() -> None:
    tree = trained("tree", 4000)
    blob = modelcodec.dumps(tree, compress=False)
    plain = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
    # Each generator pickles to ~3.8 kB; the rest of a Gaussian to ~100 bytes.
    assert len(blob) * 10 < len(plain)
    # The forest's own generator is seeded (its bagging weights, its features per split):
    # kept, so a restored forest grows as the original would.
    restored = modelcodec.loads(blob)
    assert (
        restored["PositionCalibrated"].model._rng.getstate()
        == tree["PositionCalibrated"].model._rng.getstate()
    )


def test_the_loaded_tree_has_the_in_memory_size_of_a_plainly_unpickled_one() -> None:
    """River's memory check reads in-memory sizes: our restore must not change them."""
    tree = trained("tree", 3000)
    ours = modelcodec.loads(modelcodec.dumps(tree))
    plain = pickle.loads(pickle.dumps(tree))
    # The forest, which the check measures. (The calibration layer's numpy covariance
    # comes back owning its buffer or not, as the pickle's framing falls.)
    assert calculate_object_size(trees(ours)) == calculate_object_size(trees(plain))


def test_the_tree_state_stays_under_the_bound_its_caps_imply() -> None:
    """The default forest's caps bound its state by the features it sees, not by time.

    With binary splits and max_depth d, leaves at depth d stop learning and drop their
    splitters, so at most 2**(d-1) leaves of a tree are active and 2**d exist. An active
    leaf holds a GaussianSplitter per numeric feature (two Gaussians: ~540 bytes alone,
    600 budgeted) and, per categorical feature, a count per value and class (~18 bytes,
    40 budgeted); an inactive leaf holds only its class counts (~400 bytes alone, 500
    budgeted). A forest holds at most two trees per member (the member, and the
    background tree that may replace it) and two drift detectors each (10 kB budgeted).
    The number of distinct categorical values is the one term the trees do not cap: this
    stream sends up to 1,000 unseen values per categorical feature.
    """
    depth = 8
    numeric = len(NUMERIC) + 1  # and "size", when it is a number
    values: set[tuple[str, str]] = set()
    tree = build_model("tree")
    members = model_params("tree")["n_models"]
    assert isinstance(members, int)
    for i, (x, y) in enumerate(synthetic_stream(30_000, seed=4)):
        tree.learn_one(x, y)
        values.update((k, v) for k, v in x.items() if isinstance(v, str))
        if i % 5000 == 4999:
            grown = trees(tree)
            assert len(grown) <= 2 * members
            active_leaf = 600 * numeric + 40 * 2 * len(values) + 600
            per_tree = 2 ** (depth - 1) * active_leaf + 2**depth * 500
            bound = len(grown) * per_tree + members * 10_000 + 20_000
            assert len(modelcodec.dumps(tree, compress=False)) < bound
            for member in grown:
                assert member._n_active_leaves <= 2 ** (depth - 1)
                assert member.n_leaves <= 2**depth


def test_a_shallow_tree_stops_growing() -> None:
    tree = build_model("tree", {"max_depth": 3, "grace_period": 50})
    sizes = []
    for i, (x, y) in enumerate(synthetic_stream(12_000, seed=5)):
        tree.learn_one(x, y)
        if i % 3000 == 2999:
            sizes.append(len(modelcodec.dumps(tree, compress=False)))
    for member in trees(tree):
        assert member.n_leaves <= 8
        assert member._n_active_leaves <= 4
    assert max(sizes) < 40_000 * 2 * len(tree["PositionCalibrated"].model.models)


def test_the_tree_keeps_nothing_per_shopper_or_item() -> None:
    """The ids name millions of values: a forest that counted them per leaf would grow
    with every new shopper."""
    plain, with_ids = build_model("tree"), build_model("tree")
    for i, (x, y) in enumerate(synthetic_stream(4000, seed=6)):
        plain.learn_one(x, y)
        with_ids.learn_one({**x, "user_id": f"u{i}", "item_id": f"i{i}"}, y)
    assert modelcodec.dumps(with_ids) == modelcodec.dumps(plain)


def test_a_seeded_distribution_keeps_its_generator() -> None:
    gaussian = proba.Gaussian(seed=42)
    for value in (1.0, 2.0, 4.0):
        gaussian.update(value)
    gaussian.sample()
    restored = modelcodec.loads(modelcodec.dumps(gaussian))
    assert [restored.sample() for _ in range(5)] == [gaussian.sample() for _ in range(5)]


def test_an_unseeded_distribution_gets_a_working_generator_of_its_own() -> None:
    gaussians = [proba.Gaussian() for _ in range(2)]
    for g in gaussians:
        g.update(1.0)
        g.update(3.0)
    first, second = modelcodec.loads(modelcodec.dumps(gaussians))
    assert isinstance(first._rng, random.Random)
    assert first._rng is not second._rng
    assert (first.mu, first.sigma) == (gaussians[0].mu, gaussians[0].sigma)
    assert list(first.__dict__) == list(gaussians[0].__dict__)
    draws = [first.sample() for _ in range(50)]
    assert len(set(draws)) == 50


def test_small_blobs_are_stored_raw_and_large_ones_compressed() -> None:
    small = modelcodec.dumps(trained("logreg", 500))
    assert small[4:5] == b"\x00"
    large = modelcodec.dumps([0.5] * 50_000)
    assert large[4:5] == b"\x01"
    assert zlib.decompress(large[5:])[:1] == b"\x80"  # a pickle inside
    tree = modelcodec.dumps(trained("tree", 20_000))
    assert tree[4:5] == b"\x01"


def test_compression_can_be_forced_either_way() -> None:
    model = trained("logreg", 500)
    forced = modelcodec.dumps(model, compress=True)
    assert forced[4:5] == b"\x01"
    assert predictions(modelcodec.loads(forced), PROBE) == predictions(model, PROBE)
    tree = trained("tree", 2000)
    raw = modelcodec.dumps(tree, compress=False)
    assert raw[4:5] == b"\x00"
    assert predictions(modelcodec.loads(raw), PROBE) == predictions(tree, PROBE)


def test_incompressible_data_is_stored_raw() -> None:
    noise = random.Random(0).randbytes(100_000)
    assert modelcodec.dumps(noise)[4:5] == b"\x00"


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"HRM",
        b"not a model blob at all",
        pickle.dumps({"a": 1}),  # a pickle, but not ours
        b"HRM1\x07" + pickle.dumps(1),  # unknown compression
        b"HRM1\x01not zlib",
        b"HRM1\x00" + pickle.dumps(list(range(100)))[:-5],  # truncated
        b"HRM1\x00\x80\x05\x95garbage",
    ],
)
def test_foreign_or_broken_bytes_are_state_errors(blob: bytes) -> None:
    with pytest.raises(StateError):
        modelcodec.loads(blob)


def test_a_truncated_model_blob_is_a_state_error() -> None:
    blob = modelcodec.dumps(trained("tree", 2000))
    for cut in (6, len(blob) // 2, len(blob) - 1):
        with pytest.raises(StateError):
            modelcodec.loads(blob[:cut])


def test_loads_leaves_the_garbage_collector_as_it_found_it() -> None:
    blob = modelcodec.dumps(trained("logreg", 100))
    assert gc.isenabled()
    modelcodec.loads(blob)
    with pytest.raises(StateError):
        modelcodec.loads(blob[:-3])
    assert gc.isenabled()
    gc.disable()
    try:
        modelcodec.loads(blob)
        assert not gc.isenabled()
    finally:
        gc.enable()
