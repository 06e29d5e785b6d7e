"""The "fm" kind: River's factorization machine, faster, with a prediction that changes nothing.

`learner.factorization.FMClassifier` must learn exactly what River's `facto.FMClassifier`
learns (same weights, same latents in the same order), predict what River predicts for
features it has learned, leave the model alone when it predicts, learn a shopper's taste
per category from the ids when they are there, and keep its state bounded by `buckets`.
"""

import pickle
import random
from typing import Any

from river import compose, facto, optim, preprocessing

from learner import modelcodec
from learner.factorization import FMClassifier
from learner.metrics import ProgressiveMetrics
from learner.models import SelectNumbers, SelectStrings, build_model
from learner.variant import Variant
from tests.api.helpers import roc_auc
from tests.learner.test_models import Features, synthetic_stream


def with_ids(n: int, seed: int) -> list[tuple[Features, bool]]:
    """The synthetic stream with a shopper's and an item's id on every example."""
    rng = random.Random(seed)
    out = []
    for x, y in synthetic_stream(n, seed=seed):
        x["user_id"] = f"u{rng.randrange(300)}"
        x["item_id"] = f"i{rng.randrange(100)}"
        out.append((x, y))
    return out


def fm_pipeline(classifier: type, **params: Any) -> Any:
    """What "fm" builds without hashing, around River's classifier or ours."""
    model = classifier(
        n_factors=6,
        weight_optimizer=optim.SGD(0.02),
        latent_optimizer=optim.SGD(0.05),
        l2_latent=0.001,
        latent_initializer=optim.initializers.Normal(sigma=0.1, seed=7),
        seed=7,
        **params,
    )
    return compose.Pipeline(
        (SelectNumbers() | preprocessing.StandardScaler()) + SelectStrings(), model
    )


def test_it_learns_exactly_what_rivers_factorization_machine_learns() -> None:
    ours, river = fm_pipeline(FMClassifier), fm_pipeline(facto.FMClassifier)
    data = with_ids(3000, seed=1)
    for x, y in data:
        # As a variant learns: predict, then learn.
        ours.predict_proba_one(x)
        river.predict_proba_one(x)
        ours.learn_one(x, y)
        river.learn_one(x, y)
    a, b = ours["FMClassifier"], river["FMClassifier"]
    assert list(a.latents) == list(b.latents)
    assert max(abs(a.latents[k] - b.latents[k]).max() for k in a.latents) < 1e-9
    assert max(abs(a.weights[k] - b.weights[k]) for k in b.weights) < 1e-9
    assert abs(a.intercept - b.intercept) < 1e-9
    assert a.latent_optimizer.n_iterations == b.latent_optimizer.n_iterations
    for x, _ in data[:300]:  # every feature of these was learned
        assert abs(ours.predict_proba_one(x)[True] - river.predict_proba_one(x)[True]) < 1e-9


def test_other_latent_optimizers_take_rivers_own_update() -> None:
    ours, river = (
        compose.Pipeline(
            SelectNumbers() | preprocessing.StandardScaler(),
            classifier(n_factors=3, seed=1, latent_optimizer=optim.AdaGrad(0.05)),
        )
        for classifier in (FMClassifier, facto.FMClassifier)
    )
    for x, y in synthetic_stream(500, seed=2):
        ours.learn_one(x, y)
        river.learn_one(x, y)
    a, b = ours["FMClassifier"], river["FMClassifier"]
    assert list(a.latents) == list(b.latents)
    assert max(abs(a.latents[k] - b.latents[k]).max() for k in a.latents) < 1e-9


def test_a_prediction_leaves_the_model_as_it_was() -> None:
    """River's would draw and store a latent for every feature it has not learned yet."""
    model = build_model("fm", {"buckets": 0})
    for x, y in with_ids(500, seed=4):
        model.learn_one(x, y)
    before = pickle.dumps(model)
    unseen: Features = {"user_id": "new-shopper", "item_id": "new-item", "category": "new"}
    for x in [unseen, {**unseen, "price": 3.0}, {}]:
        proba = model.predict_proba_one(x)
        assert 0.0 < proba[True] < 1.0
    assert pickle.dumps(model) == before


def test_an_unlearned_feature_interacts_as_a_zero_vector() -> None:
    model = build_model("fm", {"buckets": 0})
    for x, y in with_ids(500, seed=5):
        model.learn_one(x, y)
    known: Features = {"category": "cat1", "device": "mobile", "price": 2.0}
    assert model.predict_proba_one({**known, "brand": "never seen"}) == model.predict_proba_one(
        known
    )


def taste_stream(n: int, seed: int, ids: bool = True) -> list[tuple[Features, bool]]:
    """Each shopper likes two of eight categories and buys little else.

    Every category is liked by as many shoppers as any other and every shopper buys as
    much as any other, so no single feature says anything: only the pair does.
    """
    rng = random.Random(seed)
    categories = [f"cat{i}" for i in range(8)]
    liked = {f"u{u}": {categories[u % 8], categories[(u * 3 + 1) % 8]} for u in range(40)}
    out: list[tuple[Features, bool]] = []
    for _ in range(n):
        user = rng.choice(sorted(liked))
        category = rng.choice(categories)
        x: Features = {"category": category, "price": rng.uniform(1, 20), "position": 1.0}
        if ids:
            x["user_id"] = user
        out.append((x, rng.random() < (0.4 if category in liked[user] else 0.04)))
    return out


def held_out_auc(model: Any, train: list[tuple[Features, bool]], test: list[Any]) -> float:
    variant = Variant("v", "test", model, ProgressiveMetrics(100))
    for x, y in train:
        variant.learn(x, y)
    return roc_auc([y for _, y in test], [variant.predict(x) for x, _ in test])


def test_it_learns_each_shoppers_taste_per_category_from_the_ids() -> None:
    """500 examples a shopper. The default latent_lr (0.005, what the simulator's stream
    rewarded: ~20 examples a shopper, whose tastes the aggregates already carry) would
    need many more; docs/learner.md says when to raise it."""
    data = taste_stream(24_000, seed=6)
    train, test = data[:20_000], data[20_000:]
    fm = held_out_auc(build_model("fm", {"latent_lr": 0.1}), train, test)
    logreg = held_out_auc(build_model("logreg"), train, test)
    # A linear model sees no signal in any single feature; the interaction is the signal.
    assert logreg < 0.6
    assert fm > 0.75
    without_ids = taste_stream(24_000, seed=6, ids=False)
    assert (
        held_out_auc(
            build_model("fm", {"latent_lr": 0.1}), without_ids[:20_000], without_ids[20_000:]
        )
        < 0.6
    )


def test_without_the_ids_it_still_learns_what_the_other_features_say() -> None:
    data = synthetic_stream(6000, seed=7)
    assert held_out_auc(build_model("fm"), data[:5000], data[5000:]) > 0.7


def test_a_latent_costs_its_floats_and_little_more_in_the_blob() -> None:
    """Pickled one array each, a latent of 4 floats took ~130 bytes and ~20 µs to dump."""
    model = build_model("fm", {"buckets": 0})
    for i in range(5000):
        model.learn_one({"user_id": f"u{i}", "category": f"c{i % 8}", "price": 1.0 * i}, i % 9 == 0)
    n = len(model["FMClassifier"].latents)
    # 4 floats, and the key and the weight of the value (~20 bytes in a pickled dict).
    assert len(modelcodec.dumps(model, compress=False)) < n * (4 * 8 + 30) + 10_000


def test_hashed_values_keep_the_state_bounded_by_the_buckets() -> None:
    hashed, plain = build_model("fm", {"buckets": 64}), build_model("fm", {"buckets": 0})
    rng = random.Random(8)
    for i in range(3000):
        x: Features = {"user_id": f"u{i}", "category": f"c{rng.randrange(5)}", "price": 1.0 + i}
        hashed.learn_one(x, i % 7 == 0)
        plain.learn_one(x, i % 7 == 0)
    # The numeric feature, and at most one latent a bucket.
    assert len(hashed["FMClassifier"].latents) <= 64 + 1
    assert len(plain["FMClassifier"].latents) > 3000
    assert len(modelcodec.dumps(hashed)) * 10 < len(modelcodec.dumps(plain))


def test_a_replay_from_the_start_learns_the_same_model() -> None:
    """Seeded latents: a learner that replays the stream ends where the first one did."""
    first, second = build_model("fm"), build_model("fm")
    for x, y in with_ids(1000, seed=9):
        first.learn_one(x, y)
        second.learn_one(x, y)
    assert modelcodec.dumps(first) == modelcodec.dumps(second)
