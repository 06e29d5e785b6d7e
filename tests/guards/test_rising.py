"""The one-sided adaptive window on the error: a fall keeps the window, a rise is reported
with its test, and a seeded stable rate raises nothing."""

import pickle
import random

from guards.rising import RisingMean, RisingRate


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


def test_a_restored_window_writes_its_filled_part_and_cuts_as_one_never_stopped() -> None:
    for window, rate in ((RisingRate(0.0005), 0.1), (RisingMean(0.01, 0.05, 4), 0.3)):
        rng = random.Random(7)
        feed(window, rate, 3_200, rng)  # 100 blocks of a room for 4,096
        dumped = pickle.dumps(window)
        # 100 blocks of at most four float32 sums each; the whole room would be 64 KB.
        assert len(dumped) < 2_500, "only the filled blocks are written"
        restored = pickle.loads(dumped)
        assert (restored.width, restored.rate) == (window.width, window.rate)
        # Past the buffer's end (a compaction) and through a rise, both cut alike.
        later = [(rng.random() < rate * (1 if i < 140_000 else 3)) for i in range(150_000)]
        cuts = [[c for h in later if (c := w.update(h)) is not None] for w in (window, restored)]
        assert cuts[0] == cuts[1] and any(c.rise for c in cuts[0])
