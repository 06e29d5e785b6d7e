"""The one-sided adaptive window on the error: a fall keeps the window, a rise is reported
with its test, and a seeded stable rate raises nothing."""

import pickle
import random

from guards.rising import RisingRate


def feed(window: RisingRate, rate: float, n: int, rng: random.Random) -> list[tuple[int, bool]]:
    cuts = []
    for i in range(n):
        cut = window.update(rng.random() < rate)
        if cut is not None:
            cuts.append((i, cut.rise))
    return cuts


def test_a_fall_keeps_the_newer_part_and_a_later_rise_is_found_against_it() -> None:
    rng = random.Random(3)
    window = RisingRate(0.0005)
    assert feed(window, 0.2, 3_000, rng) == []
    falls = feed(window, 0.02, 6_000, rng)
    assert falls and not any(rise for _, rise in falls)
    assert window.width >= 3_000  # the low level stays as evidence
    rises = []
    for i in range(2_000):
        cut = window.update(rng.random() < 0.06)
        if cut is not None and cut.rise:
            rises.append((i, cut))
    assert rises, "a tripled error rate is found"
    at, cut = rises[0]
    assert at < 1_000
    assert cut.statistic == cut.after - cut.before
    assert cut.statistic > cut.bound > 0
    assert cut.n_before + cut.n_after > cut.n_after >= 32


def test_a_stable_rate_raises_no_cut_and_the_window_pickles() -> None:
    rng = random.Random(5)
    window = RisingRate(0.0005)
    assert feed(window, 0.1, 100_000, rng) == []
    assert window.width == 2_048 * 32  # capped
    copy = pickle.loads(pickle.dumps(window))
    assert (copy.width, copy.rate) == (window.width, window.rate)
