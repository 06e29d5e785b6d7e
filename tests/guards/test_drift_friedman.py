"""River's FriedmanDrift with a gradual drift (its "gsg" type: for 2,000 examples half come
from the new concept, then all do), labelled y > 14.4 (its first concept's median), and a
logistic model learning it progressively: the model's error goes from about 0.16 to 0.21
and back as it adapts. The monitor at its shipped settings alerts within 500 examples of
River's ADWIN on the error (its first cut on a rise); the clean twin, and a clean
RandomRBF stream whose model's error wanders between 0.30 and 0.39, raise nothing.
Unit level: no Kafka, no Redis."""

from collections.abc import Iterator
from typing import Any

from river.datasets import synth

from tests.guards.test_drift_benchmark import first_alarms

START = 18_000
"""Where the drift starts: the first example that may come from the new concept."""
FAR = 10**9
"""A change point past the stream's end."""


def friedman(seed: int, n: int, drift: bool) -> Iterator[tuple[dict[Any, Any], bool]]:
    points = (START, FAR) if drift else (FAR, FAR + 1)
    kind = "gsg" if drift else "gra"
    gen = synth.FriedmanDrift(kind, points, transition_window=2_000, seed=seed)
    return ((x, float(y) > 14.4) for x, y in gen.take(n))


def test_a_gradual_friedman_drift_is_alerted_within_500_examples_of_rivers_adwin() -> None:
    # Seed 1: River's ADWIN cut on the rise at 18,720; the strict confidence alone (the
    # window before) found it at 19,680.
    guards, river = first_alarms(friedman(1, 21_000, drift=True))
    assert [a for a in guards if a < START] == []
    caught = [a for a in river if a >= START]
    assert caught, "River's ADWIN on the error catches this drift"
    alerted = [a for a in guards if a >= START]
    assert alerted and alerted[0] <= caught[0] + 500


def test_its_clean_twin_raises_no_alert() -> None:
    guards, _ = first_alarms(friedman(1, 40_000, drift=False))
    assert guards == []


def test_a_wandering_clean_error_raises_no_alert() -> None:
    # Seed 0: the model's error moves between 0.30 and 0.40 with no drift; against the low a
    # fall cut kept, River's confidence alarmed at example 32,960.
    rbf = synth.RandomRBFDrift(seed_model=0, seed_sample=0)
    guards, _ = first_alarms(iter(rbf.take(40_000)))
    assert guards == []
