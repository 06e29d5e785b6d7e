"""The population stability index of one watched signal, over tumbling windows."""

import bisect
import math
from collections import Counter

_MAX_CATEGORIES = 50
"""Bins of a categorical signal: its most common values; the rest count as "other"."""


class PopulationStability:
    """PSI of one signal: reference window, then tumbling windows compared with it.

    The first `edges_from` values of the reference fix the bins (quantiles, or
    the most common values); only counts are kept afterwards, so the state
    stays small. Two bins are always there: "other" (a value the bins do not
    cover: an unseen category, text where numbers were) and "missing", so a
    missing value counts in one bin whenever it arrives. A signal is watched
    from its first present value on: one the stream never carries is never
    compared (it would be 100 % missing against 100 % missing, or worse).
    """

    def __init__(self, window: int, bins: int) -> None:
        self.window = window
        self.bins = bins
        self.edges_from = min(window, 100 * bins)
        self.rebase()

    def rebase(self) -> None:
        """Start over: the next `window` values become the reference."""
        self._sample: list[float | str | None] | None = []
        self._edges: list[float] | None = None
        self._categories: dict[float | str, int] | None = None
        self._reference: list[int] = []
        self._current: list[int] = []
        self._n = 0

    def update(self, value: float | str | None) -> float | None:
        """Count one value; the PSI when a compared window is complete, else None."""
        if self._sample is not None:
            if value is None and not self._sample:
                return None  # not watched until the signal first shows up
            self._sample.append(value)
            if len(self._sample) == self.edges_from:
                self._fix_bins(self._sample)
            return None
        counts = self._current if self._n >= self.window else self._reference
        counts[self._bin(value)] += 1
        self._n += 1
        if self._n < 2 * self.window or self._n % self.window:
            return None
        psi = _psi(self._reference, self._current)
        self._current = [0] * len(self._current)
        return psi

    def _fix_bins(self, sample: list[float | str | None]) -> None:
        present = [v for v in sample if v is not None]
        numbers = [v for v in present if not isinstance(v, str) and math.isfinite(v)]
        texts = any(isinstance(v, str) for v in present)
        if not texts and len(set(numbers)) > self.bins:
            ordered = sorted(numbers)
            cuts = (ordered[len(ordered) * i // self.bins] for i in range(1, self.bins))
            self._edges = sorted(set(cuts))
            size = len(self._edges) + 1
        else:
            # Keyed by the value itself, not its text: 3 and 3.0 (an int in a producer's
            # JSON, a float from the feature pipeline) are one position, not two.
            finite = (v for v in present if isinstance(v, str) or math.isfinite(v))
            common = Counter(finite).most_common(_MAX_CATEGORIES)
            names = sorted((name for name, _ in common), key=lambda v: (isinstance(v, str), v))
            self._categories = {name: i for i, name in enumerate(names)}
            size = len(self._categories)
        self._reference = [0] * (size + 2)  # then "other", then "missing"
        self._current = [0] * (size + 2)
        self._sample = None
        for value in sample:
            self._reference[self._bin(value)] += 1
            self._n += 1

    def _bin(self, value: float | str | None) -> int:
        if value is None:
            return len(self._reference) - 1
        other = len(self._reference) - 2
        if self._categories is not None:
            return self._categories.get(value, other)
        if isinstance(value, str) or not math.isfinite(value):
            return other
        assert self._edges is not None  # set with the categories' absence
        return bisect.bisect_right(self._edges, value)


def _psi(reference: list[int], current: list[int]) -> float:
    # Half a count of smoothing: an empty bin must not make the index infinite.
    total_r = sum(reference) + 0.5 * len(reference)
    total_c = sum(current) + 0.5 * len(current)
    psi = 0.0
    for r, c in zip(reference, current, strict=True):
        pr, pc = (r + 0.5) / total_r, (c + 0.5) / total_c
        psi += (pc - pr) * math.log(pc / pr)
    return psi
