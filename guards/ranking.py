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
from collections import deque

import numpy as np
from scipy import stats


class RankingDrop:
    """Detects a fall of the ROC AUC of recent predictions; `update` then `drift_detected`."""

    def __init__(self, window: int, reference: int, every: int, min_drop: float, z: float) -> None:
        self.window, self.reference, self.every = window, reference, every
        self.min_drop, self.z = min_drop, z
        self._seen: deque[tuple[bool, float]] = deque(maxlen=window + reference)
        self._since = 0
        self.drift_detected = False
        self.recent_auc = math.nan
        self.reference_auc = math.nan
        self.statistic = math.nan

    def reset(self) -> None:
        """Forget the stream: the next `window + reference` examples form a new yardstick."""
        self._seen.clear()
        self._since = 0

    def update(self, y: bool, p: float) -> None:
        self.drift_detected = False
        self._seen.append((y, p if math.isfinite(p) else 0.5))
        self._since += 1
        if self._since < self.every or len(self._seen) < self._seen.maxlen:  # type: ignore[operator]
            return
        self._since = 0
        seen = np.array(self._seen, dtype=np.float64)
        before, recent = seen[: self.reference], seen[self.reference :]
        ref, cur = _auc(before), _auc(recent)
        if ref is None or cur is None:
            return
        positives = int(recent[:, 0].sum())
        se = _hanley_mcneil(cur, positives, len(recent) - positives)
        self.recent_auc, self.reference_auc = cur, ref
        self.statistic = (ref - cur) / se if se > 0 else math.inf
        if ref - cur >= self.min_drop and self.statistic >= self.z:
            self.drift_detected = True
            self.reset()


def _auc(rows: np.ndarray) -> float | None:
    y = rows[:, 0] > 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(rows[:, 1])
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
    ) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))
