"""The drift monitor at its shipped settings on River's drift streams (bench/drift.py's
material): it alerts within 500 examples of River's ADWIN on the 0/1 error, and never on
the clean twin. A River scaler and logistic regression learn each stream progressively."""

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from river import compose, drift, linear_model, preprocessing
from river.datasets import synth

from guards.drift import DriftMonitor
from guards.settings import GuardSettings

Concept = Callable[[int], Any]


def stream(
    before: Concept, after: Concept, seed: int, n: int, at: int, width: int
) -> Iterator[Any]:
    if width > 1:
        mixed = synth.ConceptDriftStream(
            before(seed), after(seed), position=at, width=width, seed=seed
        )
        return iter(mixed.take(n))
    if width == 1:
        return itertools.chain(before(seed).take(at), after(seed + 7_919).take(n - at))
    return iter(before(seed).take(n))


def first_alarms(examples: Iterator[Any], categorical: bool = False) -> tuple[list[int], list[int]]:
    """Example numbers where the monitor alerted, and where River's ADWIN on the error fired."""
    encode = preprocessing.OneHotEncoder() if categorical else preprocessing.StandardScaler()
    model = compose.Pipeline(encode, linear_model.LogisticRegression())
    monitor = DriftMonitor("m", "v", GuardSettings())
    adwin = drift.ADWIN()
    guards, river = [], []
    for i, (x, label) in enumerate(examples, 1):
        x = {str(k): str(v) if categorical else v for k, v in x.items()}
        y = bool(label)
        p = model.predict_proba_one(x).get(True, 0.5)
        q = min(max(p if y else 1.0 - p, 1e-15), 1.0)
        if monitor.update(-math.log(q), x, p, float(i), y):
            guards.append(i)
        adwin.update(float((p >= 0.5) != y))
        if adwin.drift_detected and i > 1_000:
            river.append(i)
        model.learn_one(x, y)
    return guards, river


CASES = {
    "SEA 0→3, abrupt": (
        lambda s: synth.SEA(0, seed=s),
        lambda s: synth.SEA(3, seed=s),
        20_000,
        1,
        False,
    ),
    "SEA 0→3 at 10,000, width 1,000": (
        lambda s: synth.SEA(0, seed=s),
        lambda s: synth.SEA(3, seed=s),
        10_000,
        1_000,
        False,
    ),
    "STAGGER 0→2, gradual": (
        lambda s: synth.STAGGER(0, seed=s),
        lambda s: synth.STAGGER(2, seed=s),
        20_000,
        2_000,
        True,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_drift_adwin_catches_is_alerted_within_500_examples_of_it(case: str) -> None:
    before, after, at, width, categorical = CASES[case]
    guards, river = first_alarms(stream(before, after, 1, 2 * at, at, width), categorical)
    start = at - width
    caught = [a for a in river if a >= start]
    assert caught, "River's ADWIN on the error catches this drift"
    alerted = [a for a in guards if a >= start]
    assert alerted and alerted[0] <= caught[0] + 500
    assert [a for a in guards if a < start] == []


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_the_clean_twin_raises_no_alert(case: str) -> None:
    before, after, at, _, categorical = CASES[case]
    guards, _ = first_alarms(stream(before, after, 1, 2 * at, at, 0), categorical)
    assert guards == []
