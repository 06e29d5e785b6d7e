"""Whether the served ranking got worse: the ROC AUC of recent examples against before.

At a 5 % purchase rate the log loss is dominated by the base rate: a concept drift that
turns the model's ranking upside down (shoppers now buy what they used to skip) moved
the progressive loss by a fifth, within its noise, while the AUC of the same predictions
fell from about 0.77 to 0.35. So the ranking is watched on its own: every `every`
examples, the exact AUC of the last `window` is compared with the exact AUC of the
`reference` examples before them. A drop is a drift when it is at least `min_drop` and
at least `z` standard errors (Hanley and McNeil, 1982) of the recent AUC. The test is
on ranks only: a model that is merely miscalibrated does not trip it.
"""

import math

import numpy as np
import numpy.typing as npt
from scipy import stats


class RankingDrop:
    """Detects a fall of the ROC AUC of recent predictions; `update` then `drift_detected`."""

    def __init__(self, window: int, reference: int, every: int, min_drop: float, z: float) -> None:
        self.window, self.reference, self.every = window, reference, every
        self.min_drop, self.z = min_drop, z
        # A ring of the last window + reference examples, oldest at `_next` once full.
        size = window + reference
        self._y = np.zeros(size, dtype=np.bool_)
        self._p = np.zeros(size, dtype=np.float64)
        self._next = 0
        self._count = 0
        self._since = 0
        self.drift_detected = False
        self.recent_auc = math.nan
        self.reference_auc = math.nan
        self.statistic = math.nan

    def reset(self) -> None:
        """Forget the stream: the next `window + reference` examples form a new yardstick."""
        self._next = self._count = self._since = 0

    def update(self, y: bool, p: float) -> None:
        self.drift_detected = False
        size = len(self._p)
        self._y[self._next] = y
        self._p[self._next] = p if math.isfinite(p) else 0.5
        self._next = (self._next + 1) % size
        self._count = min(self._count + 1, size)
        self._since += 1
        if self._since < self.every or self._count < size:
            return
        self._since = 0
        order = np.roll(np.arange(size), -self._next)  # oldest first
        ys, ps = self._y[order], self._p[order]
        ref = roc_auc(ys[: self.reference], ps[: self.reference])
        cur = roc_auc(ys[self.reference :], ps[self.reference :])
        if ref is None or cur is None:
            return
        positives = int(ys[self.reference :].sum())
        se = _hanley_mcneil(cur, positives, self.window - positives)
        self.recent_auc, self.reference_auc = cur, ref
        self.statistic = (ref - cur) / se if se > 0 else math.inf
        if ref - cur >= self.min_drop and self.statistic >= self.z:
            self.drift_detected = True
            self.reset()


def roc_auc(y: npt.NDArray[np.bool_], p: npt.NDArray[np.float64]) -> float | None:
    """Exact ROC AUC: the share of (positive, negative) pairs ranked right, ties counting half
    (the Mann-Whitney U statistic over P·N); None with one class only."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = stats.rankdata(p)  # tied scores share their average rank: the half
    u = float(ranks[y].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def _hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
    ) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))
