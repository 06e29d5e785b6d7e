"""The tree's calibration layer: the level at the top of the page brought back toward
what sells there, the ranking at one position kept, nothing said before the model has
learned."""

import math
import random

import numpy as np
from scipy.stats import rankdata

from learner.calibrated import PositionCalibrated
from learner.forest import ARFClassifier

POSITION_COEF = -0.35
"""As the simulator's hidden model: attention fades down the page, weakly beside taste."""


TRAITS = 8
"""Shopper and item traits that each sell a little, as the learner's many features do: a
split on one of them gains more than one on the position."""


def example(rng: random.Random, position: int) -> tuple[dict[str, float], float]:
    x = {f"trait{i}": rng.gauss(0.0, 1.0) for i in range(TRAITS)}
    logit = -3.4 + 0.5 * sum(x.values()) + POSITION_COEF * math.log1p(position)
    x["log_position"] = math.log1p(position)
    return x, 1.0 / (1.0 + math.exp(-logit))


def forest() -> ARFClassifier:
    return ARFClassifier(n_models=3, grace_period=50, max_depth=8, leaf_prediction="mc", seed=0)


def p_true(model: object, x: dict[str, float]) -> float:
    return float(model.predict_proba_one(x).get(True, 0.0))  # type: ignore[attr-defined]


def test_the_top_of_the_page_comes_near_its_level_and_each_positions_ranking_is_kept() -> None:
    rng = random.Random(7)
    calibrated, bare = PositionCalibrated(forest()), forest()
    for _ in range(30_000):
        x, p = example(rng, rng.randrange(10))
        y = rng.random() < p
        calibrated.learn_one(x, y)
        bare.learn_one(x, y)
    top = [example(rng, 0) for _ in range(4_000)]
    truth = sum(p for _, p in top)
    ours = np.array([p_true(calibrated, x) for x, _ in top])
    theirs = np.array([p_true(bare, x) for x, _ in top])
    # The forest predicts near the page's average at the top too, below what sells there;
    # the layer brings the level most of the way back.
    assert theirs.sum() / truth < 0.9
    assert abs(ours.sum() / truth - 1.0) < 0.5 * abs(theirs.sum() / truth - 1.0)
    # The same forest inside (its predictions draw nothing at random), and the layer is
    # increasing in its log-odds: candidates at one position rank as the forest ranks them.
    assert (rankdata(ours) == rankdata(theirs)).all()


def test_the_learners_sample_weights_reach_the_layer() -> None:
    # River's forest draws its own weight per example and drops the one it is given; the
    # layer reads it, so the fake negatives' importance weights still count.
    rng = random.Random(3)
    light, heavy = PositionCalibrated(forest()), PositionCalibrated(forest())
    for _ in range(5_000):
        x, p = example(rng, rng.randrange(10))
        y = rng.random() < p
        light.learn_one(x, y, w=1.0)
        heavy.learn_one(x, y, w=3.0 if y else 1.0)
    probe = [example(rng, 0)[0] for _ in range(500)]
    assert sum(map(p_true, [heavy] * 500, probe)) > 1.5 * sum(map(p_true, [light] * 500, probe))


def test_an_untrained_model_says_nothing() -> None:
    model = PositionCalibrated(forest())
    x, _ = example(random.Random(1), 0)
    assert model.predict_proba_one(x) == {}
    model.learn_one(x, True)
    assert model.layer.intercept == 0.0
    assert model.predict_proba_one(x)
