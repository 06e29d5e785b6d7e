"""The ranking guard: a fall of the served AUC is a drift, noise and miscalibration are not."""

import random

from guards.ranking import RankingDrop


def stream(rng: random.Random, n: int, separation: float, scale: float = 1.0):  # type: ignore[no-untyped-def]
    """(label, probability): positives score `separation` higher on average."""
    for _ in range(n):
        y = rng.random() < 0.05
        yield y, min(1.0, max(0.0, scale * (0.05 + 0.02 * rng.gauss(separation if y else 0, 1))))


def run(detector: RankingDrop, examples) -> list[int]:  # type: ignore[no-untyped-def]
    fired = []
    for i, (y, p) in enumerate(examples):
        detector.update(y, p)
        if detector.drift_detected:
            fired.append(i)
    return fired


def fresh() -> RankingDrop:
    return RankingDrop(window=1_000, reference=5_000, every=250, min_drop=0.1, z=4.0)


def test_an_inverted_ranking_is_detected_within_a_window() -> None:
    rng = random.Random(1)
    examples = [*stream(rng, 20_000, 1.0), *stream(rng, 5_000, -1.0)]
    detector = fresh()
    fired = run(detector, examples)
    assert fired and 20_000 < fired[0] <= 21_000
    assert detector.recent_auc <= detector.reference_auc - 0.1
    assert detector.reference_auc > 0.7
    assert detector.statistic >= 4.0


def test_a_steady_ranking_raises_nothing_in_200k_examples() -> None:
    assert run(fresh(), stream(random.Random(2), 200_000, 1.0)) == []


def test_a_miscalibrated_but_equally_ranked_model_raises_nothing() -> None:
    rng = random.Random(3)
    examples = [*stream(rng, 20_000, 1.0), *stream(rng, 20_000, 1.0, scale=3.0)]
    assert run(fresh(), examples) == []


def test_one_class_is_no_evidence() -> None:
    assert run(fresh(), [(False, 0.1)] * 20_000) == []
