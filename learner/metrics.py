"""Progressive validation metrics: every example is scored before the model learns it."""

import logging
import math
import zlib
from bisect import bisect_right
from collections import deque
from typing import Any

import numpy as np

from guards.ranking import roc_auc
from learner import ranking

log = logging.getLogger("headrace.learner")

Report = dict[str, float | int | None]

STATE_VERSION = 2
"""Bump whenever the pickled attributes change meaning or shape (see `__setstate__`)."""

RELIABILITY_EDGES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""Edges of the reliability table's bins over the predicted probability; a bin holds
[lower, upper), the last one also 1. Narrow at the bottom, where purchase probabilities are."""

BINS = 4096
LOGIT_LIMIT = 12.0
"""The cumulative ranking histogram: BINS bins uniform in logit over ±LOGIT_LIMIT, the ends
also holding everything beyond (p below 6.1e-6 or above 1 - 6.1e-6). A bin is 0.0059 wide
in logit: p ± 0.03 % at p = 0.05."""

_SCALE = BINS / (2 * LOGIT_LIMIT)
_INNER_EDGES = list(RELIABILITY_EDGES[1:-1])
_EPS = 1e-15
"""River's `LogLoss` clamps a probability into [_EPS, 1 - _EPS] first."""
_FALLBACK_WINDOW = 1_000


class ProgressiveMetrics:
    """Log loss, accuracy, ROC AUC, PR AUC and calibration of scored predictions, over the whole
    stream and over the last `window` examples, and a reliability table.

    `update` is O(1): a running log loss with River's own formulas (so the values equal
    `evaluate.progressive_val_score`'s), counts, one bin of a fine histogram and one of the
    reliability table. The rolling ranking numbers are exact, computed by `report` from the
    window of (label, probability, predicted label); the cumulative ones come from the
    histogram, with the ROC AUC's worst-case error alongside.
    """

    __slots__ = (
        "_correct",
        "_loss",
        "_loss_n",
        "_neg",
        "_pos",
        "_recent",
        "_rel_count",
        "_rel_pos",
        "_rel_sum",
        "_rolling_loss",
        "_rolling_loss_n",
        "n",
        "window",
    )

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self._reset(window, 0)

    def _reset(self, window: int, n: int) -> None:
        self.window = window
        self.n = n
        """Examples scored, including any before an upgrade restarted the other numbers."""
        self._loss_n = 0.0
        self._loss = 0.0
        self._rolling_loss_n = 0.0
        self._rolling_loss = 0.0
        self._correct = 0
        self._pos = [0] * BINS
        self._neg = [0] * BINS
        self._rel_count = [0] * (len(RELIABILITY_EDGES) - 1)
        self._rel_sum = [0.0] * (len(RELIABILITY_EDGES) - 1)
        self._rel_pos = [0] * (len(RELIABILITY_EDGES) - 1)
        self._recent: deque[tuple[bool, float, bool]] = deque()

    def update(self, y_true: bool, p_true: float, y_pred: bool | None = None) -> None:
        """Score one prediction: `p_true` is P(True); `y_pred` defaults to p_true > 0.5.

        Pass `y_pred` when the model's own label can differ from the threshold (River's
        `predict_one` is the argmax of a dict whose probabilities need not sum to exactly 1).
        """
        p = p_true
        if _EPS <= p <= 1.0 - _EPS:
            q = p
        else:
            # A diverged model's NaN scores as the uninformed 0.5 rather than turn every
            # cumulative number into NaN for good; anything else is clamped into [0, 1].
            p = 0.5 if p != p else min(max(float(p), 0.0), 1.0)
            q = min(max(p, _EPS), 1.0 - _EPS)
        label = p > 0.5 if y_pred is None else y_pred
        loss = -math.log(q) if y_true else -math.log(1.0 - q)
        self.n += 1
        # stats.Mean.update, as River's LogLoss runs it: the same rounding, the same values.
        self._loss_n += 1.0
        self._loss += (1.0 / self._loss_n) * (loss - self._loss)
        self._correct += y_true == label
        b = int((math.log(q / (1.0 - q)) + LOGIT_LIMIT) * _SCALE)
        if b < 0:
            b = 0
        elif b >= BINS:
            b = BINS - 1
        r = bisect_right(_INNER_EDGES, p)
        self._rel_count[r] += 1
        self._rel_sum[r] += p
        if y_true:
            self._pos[b] += 1
            self._rel_pos[r] += 1
        else:
            self._neg[b] += 1
        recent = self._recent
        if len(recent) == self.window:
            # utils.Rolling: revert the oldest (stats.Mean.revert), then update.
            old_y, old_p, _ = recent.popleft()
            self._rolling_loss_n -= 1.0
            if self._rolling_loss_n == 0:
                self._rolling_loss = 0.0
            else:
                old_loss = log_loss(old_y, old_p)
                self._rolling_loss -= (1.0 / self._rolling_loss_n) * (old_loss - self._rolling_loss)
        self._rolling_loss_n += 1.0
        self._rolling_loss += (1.0 / self._rolling_loss_n) * (loss - self._rolling_loss)
        recent.append((y_true, p, label))

    def report(self) -> Report:
        """Current values, flat, for logs, Prometheus, the history and snapshot headers.

        None where a number is undefined: no examples, or only one class for the AUCs and
        no positives for the calibration.
        """
        count = sum(self._rel_count)
        positives = sum(self._rel_pos)
        mean_prediction = math.fsum(self._rel_sum) / count if count else None
        positive_rate = positives / count if count else None
        pos, neg = _floats(self._pos), _floats(self._neg)
        auc = ranking.binned_roc_auc(pos, neg)
        ys, ps, labels = self._window_arrays()
        rolling_n = len(ys)
        rolling_mean = float(ps.mean()) if rolling_n else None
        rolling_rate = float(ys.mean()) if rolling_n else None
        return {
            "n": self.n,
            "log_loss": _finite(self._loss) if self._loss_n else None,
            "accuracy": self._correct / count if count else None,
            "roc_auc": None if auc is None else auc[0],
            "roc_auc_error": None if auc is None else auc[1],
            "pr_auc": ranking.binned_average_precision(pos, neg),
            "mean_prediction": mean_prediction,
            "positive_rate": positive_rate,
            "calibration": ranking.calibration(mean_prediction, positive_rate),
            "rolling_n": rolling_n,
            "rolling_log_loss": _finite(self._rolling_loss) if rolling_n else None,
            "rolling_accuracy": float((ys == labels).mean()) if rolling_n else None,
            "rolling_roc_auc": roc_auc(ys, ps),
            "rolling_roc_auc_se": ranking.roc_auc_se(ys, ps),
            "rolling_pr_auc": ranking.average_precision(ys, ps),
            "rolling_mean_prediction": rolling_mean,
            "rolling_positive_rate": rolling_rate,
            "rolling_calibration": ranking.calibration(rolling_mean, rolling_rate),
        }

    def window_scored(self) -> tuple[ranking.Bools, ranking.Floats]:
        """The rolling window's labels and scored probabilities, oldest first: what its
        rolling numbers are computed from, for a benchmark to set beside a held-out set."""
        ys, ps, _ = self._window_arrays()
        return ys, ps

    def reliability(self) -> list[dict[str, float | int | None]]:
        """The reliability table: per bin of predicted probability (RELIABILITY_EDGES), how many
        examples, their mean prediction and the observed positive rate (None when empty),
        since the start and over the rolling window."""
        ys, ps, _ = self._window_arrays()
        slots = np.searchsorted(_INNER_EDGES, ps, side="right")
        size = len(RELIABILITY_EDGES) - 1
        counts = np.bincount(slots, minlength=size).tolist()
        sums = np.bincount(slots, weights=ps, minlength=size).tolist()
        hits = np.bincount(slots, weights=ys, minlength=size).tolist()
        table: list[dict[str, float | int | None]] = []
        for i in range(size):
            count, rolling = self._rel_count[i], counts[i]
            table.append(
                {
                    "lower": RELIABILITY_EDGES[i],
                    "upper": RELIABILITY_EDGES[i + 1],
                    "count": count,
                    "mean_predicted": self._rel_sum[i] / count if count else None,
                    "observed_rate": self._rel_pos[i] / count if count else None,
                    "rolling_count": rolling,
                    "rolling_mean_predicted": sums[i] / rolling if rolling else None,
                    "rolling_observed_rate": hits[i] / rolling if rolling else None,
                }
            )
        return table

    def _window_arrays(self) -> tuple[ranking.Bools, ranking.Floats, ranking.Bools]:
        if not self._recent:
            return np.zeros(0, bool), np.zeros(0), np.zeros(0, bool)
        ys, ps, labels = zip(*self._recent, strict=True)
        return np.array(ys, bool), np.array(ps, np.float64), np.array(labels, bool)

    # The committed state is pickled on every publish: counts and the window go as packed
    # bytes (9 bytes an example, the histogram compressed), not as lists of Python objects.
    def __getstate__(self) -> dict[str, Any]:
        flags = bytes(y | (label << 1) for y, _, label in self._recent)
        return {
            "state_version": STATE_VERSION,
            "window": self.window,
            "n": self.n,
            "loss": (self._loss_n, self._loss),
            "rolling_loss": (self._rolling_loss_n, self._rolling_loss),
            "correct": self._correct,
            "histogram": zlib.compress(np.array(self._pos + self._neg, "<i8").tobytes(), 1),
            "reliability": (self._rel_count, self._rel_sum, self._rel_pos),
            "recent": (flags, np.array([p for _, p, _ in self._recent], "<f8").tobytes()),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("state_version") != STATE_VERSION:
            # Written by an older layout (before STATE_VERSION, the River-style ten-threshold
            # ROC AUC): its numbers cannot be carried over, so they start afresh. The count of
            # examples scored is kept.
            window, n = state.get("window"), state.get("n")
            self._reset(
                window if isinstance(window, int) and window >= 1 else _FALLBACK_WINDOW,
                n if isinstance(n, int) and n >= 0 else 0,
            )
            log.warning(
                "progressive metrics from an older layout: started afresh after %d examples",
                self.n,
            )
            return
        self.window = state["window"]
        self.n = state["n"]
        self._loss_n, self._loss = state["loss"]
        self._rolling_loss_n, self._rolling_loss = state["rolling_loss"]
        self._correct = state["correct"]
        counts = np.frombuffer(zlib.decompress(state["histogram"]), "<i8").tolist()
        self._pos, self._neg = counts[:BINS], counts[BINS:]
        self._rel_count, self._rel_sum, self._rel_pos = (list(x) for x in state["reliability"])
        flags, probabilities = state["recent"]
        ps = np.frombuffer(probabilities, "<f8").tolist()
        self._recent = deque((bool(f & 1), p, bool(f & 2)) for f, p in zip(flags, ps, strict=True))

    def __repr__(self) -> str:
        values = ", ".join(
            f"{k}={'None' if v is None else format(v, '.4g')}" for k, v in self.report().items()
        )
        return f"ProgressiveMetrics(window={self.window}, {values})"


class _Trio:
    """Where the layout before STATE_VERSION 2 kept its counts. The name stays so that such
    state still unpickles; `ProgressiveMetrics.__setstate__` then starts afresh."""


def log_loss(y_true: bool, p_true: float) -> float:
    """One example's log loss as River's `LogLoss` takes it: the probability clamped into
    (0, 1) first."""
    p = max(min(p_true, 1 - _EPS), _EPS)
    return -math.log(p) if y_true else -math.log(1 - p)


def _floats(counts: list[int]) -> ranking.Floats:
    # float64: a product of two bins' counts can pass int64 on a long-lived stream.
    return np.array(counts, np.float64)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
