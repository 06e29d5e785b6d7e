"""An adaptive window on a rate: the 0/1 error (alerted on a rise only) and the label rate.

The drift monitor alerts on the error's rises and on the label rate's changes either way
(at one confidence: `delta_settled` left out); this window reports both kinds of cut.

River's ADWIN is two-sided and, after any cut, starts over with an empty window. On the
error of a model that is still improving, it cuts on a fall (the early, worse part of the
window is dropped) and then has nothing left to compare a later rise with: on River's SEA
stream with a gradual drift, its first cut after the drift began was such a fall, and the
rise was found 2,144 examples after it, from a fresh window.

Here the window is kept in blocks of `clock` examples (ADWIN's own check interval). After
each block every split of the window into older and newer blocks is tested with ADWIN's
bound (Bifet and Gavaldà 2007, as River computes it: the window's variance, a
confidence of delta / ln(width)). A split whose newer part is significantly lower drops
the older part and nothing else happens: the lower level is the new yardstick, and the
evidence for it is kept. A split whose newer part is significantly higher is a rise: the
older part is dropped too, and the caller hears of it with the test's statistic (the
difference of the two rates) and its threshold (the bound), for the split where the
statistic exceeds the bound the most.

Two confidences. A fall cut keeps the newer part *because* it was low: on a model whose
error wanders with no drift (a logistic model on River's RandomRBF moves between 0.30
and 0.39), that kept part is a selected low, and the next upward wander, measured
against it at River's confidence, passes for a rise. So a rise is judged at the looser
`delta_settled` (River's 0.002) only against an older part that holds at least `settled`
times the blocks the last fall cut kept (any older part, when no fall cut made the
window), where the selected low is a small share of it; against a shorter one, and for
falls, at the stricter `delta`. On a drift that moves the error by a third for two
thousand examples (River's FriedmanDrift, gradual), the strict confidence alone found
the rise up to 960 examples after River's ADWIN, or not at all.
"""

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt


@lru_cache(maxsize=4)
def _splits(clock: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For a window of `k` blocks, newest first, per split: the examples in the newer and
    in the older part, and ADWIN's m (1/newer + 1/older) and its square root. They depend
    on `k` alone, which stays at the cap while the window is full: computed once, not at
    every check, and not part of the pickled state (committed at every publish)."""
    n_new = np.arange(1, k, dtype=np.float64) * clock
    n_old = k * clock - n_new
    m = 1.0 / n_new + 1.0 / n_old
    arrays = (n_new, n_old, m, np.sqrt(m))
    for a in arrays:
        a.flags.writeable = False
    return arrays


@dataclass(frozen=True, slots=True)
class Cut:
    """A significant change between the older and the newer part of the window."""

    before: float
    """Rate of the older part (dropped)."""
    after: float
    """Rate of the newer part (kept)."""
    n_before: int
    n_after: int
    statistic: float
    """after - before."""
    bound: float
    """ADWIN's bound for those two parts: |statistic| above it is significant."""

    @property
    def rise(self) -> bool:
        return self.statistic > 0


@dataclass(frozen=True, slots=True)
class MixCut(Cut):
    """A cut of a window that also keeps the labels (the error's, the mean loss's), with
    the labels over the same two parts."""

    label_before: float
    """Positive rate of the older part."""
    label_after: float
    """Positive rate of the newer part."""
    expected: float
    """The level the newer part would have at the older part's level on positives and on
    negatives, mixed at the newer part's positive rate: what the label rate alone explains."""


def _sum(buf: npt.NDArray[Any], start: int, end: int) -> float:
    return float(buf[start:end].sum(dtype=np.float64))


def _mixed(cut: Cut, older: tuple[float, float, float], pos_after: float) -> MixCut:
    """`cut` with its label figures, from the older part's sum of values, positives and sum
    of the positives' values, and the newer part's positives (direct standardisation). A
    class absent from the older part is taken at the older part's overall level."""
    total_b, pos_b, pos_total_b = older
    neg_b = cut.n_before - pos_b
    on_pos = pos_total_b / pos_b if pos_b else cut.before
    on_neg = (total_b - pos_total_b) / neg_b if neg_b else cut.before
    label_after = pos_after / cut.n_after
    expected = label_after * on_pos + (1.0 - label_after) * on_neg
    return MixCut(
        cut.before,
        cut.after,
        cut.n_before,
        cut.n_after,
        cut.statistic,
        cut.bound,
        pos_b / cut.n_before,
        label_after,
        expected,
    )


class RisingRate:
    """Adaptive window on a rate; `update` returns the cut a block made, if any."""

    _buffers: tuple[str, ...] = ("_buf",)
    """The per-block arrays: pickled as their filled part only."""
    _dtype: type[np.generic] = np.uint8
    """Their type: one byte a block (a block holds at most `clock` hits), since the monitor
    is committed with the learner's state and its size is paid at every publish."""
    _counts: frozenset[str] = frozenset()
    """Buffers of counts kept in one byte a block whatever `_dtype` is."""
    _buf: npt.NDArray[Any]
    _mix: tuple[str, str] | None = None
    """The buffers of each block's positives and of the positives' sum, in a window whose
    cuts report the label mix (a `MixCut`)."""

    def __init__(
        self,
        delta: float,
        delta_settled: float | None = None,
        settled: int = 16,
        clock: int = 32,
        max_blocks: int = 2_048,
    ) -> None:
        self.delta = delta
        self.delta_settled = delta if delta_settled is None else delta_settled
        self.settled = settled
        self.clock = clock
        self.max_blocks = max_blocks
        # Hits per block, oldest first, in [start, end) of a buffer twice the window's size:
        # appending and dropping the oldest only move indices; a full buffer is compacted.
        if not 0 < clock < 256:
            raise ValueError("clock must be between 1 and 255")
        for name in self._buffers:
            dtype = np.uint8 if name in self._counts else self._dtype
            setattr(self, name, np.zeros(2 * max_blocks, dtype=dtype))
        self._start = self._end = 0
        self._open_block()
        self._low = 0
        """Blocks the last fall cut kept that are still in the window (0 after a rise cut)."""

    # The monitor is committed with the learner's state at every publish: a window holds
    # far fewer blocks than its buffer's room most of the time, so only those are written.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._buffers:
            state[name] = state[name][self._start : self._end].copy()
        state["_start"], state["_end"] = 0, self._end - self._start
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in self._buffers:
            # A window pickled before this class kept the buffer: its monitor is not resumed
            # (guards/persisted.py), but it must load to be told so.
            filled = state.get(name)
            if filled is None:
                continue
            room = np.zeros(2 * state["max_blocks"], dtype=filled.dtype)
            room[: len(filled)] = filled
            state[name] = room
        self.__dict__.update(state)

    @property
    def width(self) -> int:
        """Examples in the window (full blocks only)."""
        return (self._end - self._start) * self.clock

    @property
    def rate(self) -> float:
        """The rate (or mean) over the window."""
        width = self.width
        total = float(self._buf[self._start : self._end].sum(dtype=np.float64))
        return total / width if width else 0.0

    def _open_block(self) -> None:
        """Start the next block's sums."""
        self._count = 0
        self._hits = 0

    def update(self, hit: bool) -> Cut | None:
        self._count += 1
        self._hits += hit
        if self._count < self.clock:
            return None
        block = self._hits
        self._open_block()
        return self._push(block)

    def _push(self, *block: float) -> Cut | None:
        """A full block's figures, one per buffer in `_buffers`; the cut it makes, if any."""
        if self._end == len(self._buf):
            for name in self._buffers:
                buf = getattr(self, name)
                kept = buf[self._start : self._end].copy()
                buf[: len(kept)] = kept
            self._start, self._end = 0, self._end - self._start
        for name, value in zip(self._buffers, block, strict=True):
            getattr(self, name)[self._end] = value
        self._end += 1
        if self._end - self._start > self.max_blocks:
            self._start += 1
            self._low = max(self._low - 1, 0)
        return self._check()

    def _variance(self, p: float, width: int) -> float:
        """The window's variance: hits are 0 or 1, so it follows from their rate."""
        return p * (1.0 - p)

    def _check(self) -> Cut | None:
        start = self._start
        k = self._end - start
        if k < 2:
            return None
        c = self.clock
        # Newest block first: the newer part of split i is the first i + 1 blocks.
        cumulative = np.cumsum(self._buf[self._start : self._end][::-1], dtype=np.float64)
        total = float(cumulative[-1])
        newer = cumulative[:-1]
        width = k * c
        n_new, n_old, m, root_m = _splits(c, k)
        p = total / width
        variance = self._variance(p, width)
        if variance <= 0.0:
            return None
        diff = newer / n_new - (total - newer) / n_old
        log_width = math.log(width)
        # ADWIN's bound, sqrt(2 m variance confidence) + 2/3 confidence m, with the square
        # root of m taken once for both confidences: these checks are most of the guards' cost.
        strict = math.log(2.0 * log_width / self.delta)
        bound = math.sqrt(2.0 * variance * strict) * root_m + (2.0 / 3.0 * strict) * m
        excess = np.abs(diff) - bound
        # Splits 0 .. settled - 1 have an older part of at least `settled` x `_low` blocks.
        settled = min(k - 1, k - self.settled * self._low)
        loose = bound
        if settled > 0 and self.delta_settled > self.delta:
            confidence = math.log(2.0 * log_width / self.delta_settled)
            root_near, near = root_m[:settled], m[:settled]
            loose = (
                math.sqrt(2.0 * variance * confidence) * root_near + (2.0 / 3.0 * confidence) * near
            )
            np.maximum(excess[:settled], diff[:settled] - loose, out=excess[:settled])
        i = int(np.argmax(excess))
        if excess[i] <= 0:
            return None
        rise = diff[i] > 0
        line = float(loose[i]) if rise and i < settled else float(bound[i])
        after = float(newer[i]) / float(n_new[i])
        before = (total - float(newer[i])) / float(n_old[i])
        cut = Cut(before, after, int(n_old[i]), int(n_new[i]), float(diff[i]), line)
        self._start = self._end - (i + 1)
        self._low = 0 if rise else i + 1
        if self._mix is None:
            return cut
        positives, positives_sum = (getattr(self, b) for b in self._mix)
        older = (
            _sum(self._buf, start, self._start),
            _sum(positives, start, self._start),
            _sum(positives_sum, start, self._start),
        )
        return _mixed(cut, older, _sum(positives, self._start, self._end))


class RisingError(RisingRate):
    """The window on the 0/1 error, keeping each block's positives and missed positives.

    The error mixes the error on positives and on negatives at the label rate: a model
    that never predicts positive at a 5 % purchase rate has the label rate for its error,
    and a cluster of purchases raises it with no change in the model. So each cut also
    reports the error the newer part would have had at the older part's error per class,
    mixed at the newer part's positive rate (direct standardisation): a rise that this
    explains is a change of the label rate (the label window's business), not of the
    model. A class absent from the older part is taken at the older part's overall error.
    """

    _buffers = ("_buf", "_pos", "_missed")
    _mix = ("_pos", "_missed")
    _pos: npt.NDArray[Any]
    _missed: npt.NDArray[Any]

    def _open_block(self) -> None:
        super()._open_block()
        self._n_pos = 0
        self._n_missed = 0

    def update(self, hit: bool, label: bool = False) -> Cut | None:
        """One example: whether the prediction was wrong, and its label."""
        self._count += 1
        self._hits += hit
        self._n_pos += label
        self._n_missed += hit and label
        if self._count < self.clock:
            return None
        block = (self._hits, self._n_pos, self._n_missed)
        self._open_block()
        return self._push(*block)


class RisingMean(RisingRate):
    """The same window on the mean of values in [0, 1] (the clipped log loss, scaled).

    ADWIN's bound takes the window's variance; for hits that is p(1 - p), but a loss in
    [0, 1] whose mean is 0.08 varies far less than a rate of 0.08 would, so the window keeps
    each block's sum of squares too. Float32 sums: a block holds at most `clock` values.

    Like the error, the mean log loss mixes the loss on positives (about 3 at a 5 % purchase
    rate) and on negatives (about 0.05) at the label rate, and a cluster of purchases raises
    it with no change in the model. So each block also keeps its positives and their sum,
    and a cut reports the mean the newer part would have had at the older part's mean per
    class, mixed at the newer part's positive rate (as `RisingError`'s cuts do).
    """

    _buffers = ("_buf", "_squares", "_pos", "_pos_sum")
    _counts = frozenset({"_pos"})
    _mix = ("_pos", "_pos_sum")
    _dtype = np.float32
    _squares: npt.NDArray[Any]
    _pos: npt.NDArray[Any]
    _pos_sum: npt.NDArray[Any]

    def _open_block(self) -> None:
        super()._open_block()
        self._sum = 0.0
        self._sum_sq = 0.0
        self._n_pos = 0
        self._sum_pos = 0.0

    def add(self, value: float, label: bool = False) -> Cut | None:
        """One value, clamped to [0, 1], and its example's label."""
        value = min(max(value, 0.0), 1.0)
        self._count += 1
        self._sum += value
        self._sum_sq += value * value
        if label:
            self._n_pos += 1
            self._sum_pos += value
        if self._count < self.clock:
            return None
        block = (self._sum, self._sum_sq, self._n_pos, self._sum_pos)
        self._open_block()
        return self._push(*block)

    def update(self, hit: bool) -> Cut | None:
        return self.add(float(hit))

    def _variance(self, p: float, width: int) -> float:
        squares = float(self._squares[self._start : self._end].sum(dtype=np.float64))
        return squares / width - p * p
