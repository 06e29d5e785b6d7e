"""Progressive validation metrics: every example is scored before the model learns it."""

import bisect
import math
from collections import deque
from typing import Any

from river import metrics
from scipy import integrate


class ProgressiveMetrics:
    """Log loss, ROC AUC and accuracy, over the whole stream and over the last `window` examples.

    The values are River's own (`metrics.LogLoss`, `metrics.ROCAUC`, `metrics.Accuracy`),
    so they equal `evaluate.progressive_val_score` on the same predictions. The rolling
    values are what `utils.Rolling(metric, window_size=window)` computes (revert the oldest,
    then update), from one shared window of (label, probability, predicted label): ~15
    bytes an example when pickled, 40% of three `utils.Rolling` windows.
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.window = window
        self.n = 0
        self._cumulative = _Trio()
        self._rolling = _Trio()
        self._recent: deque[tuple[bool, float, bool]] = deque()

    def update(self, y_true: bool, p_true: float, y_pred: bool | None = None) -> None:
        """Score one prediction: `p_true` is P(True); `y_pred` defaults to p_true > 0.5.

        Pass `y_pred` when the model's own label can differ from the threshold (River's
        `predict_one` is the argmax of a dict whose probabilities need not sum to exactly 1).
        """
        label = p_true > 0.5 if y_pred is None else y_pred
        self.n += 1
        # The loss and the histogram slot serve both the cumulative and the rolling values.
        loss, slot = log_loss(y_true, p_true), _slot(p_true)
        self._cumulative.add(y_true, loss, slot, label, 1)
        if len(self._recent) == self.window:
            old_y, old_p, old_label = self._recent.popleft()
            self._rolling.add(old_y, log_loss(old_y, old_p), _slot(old_p), old_label, -1)
        self._rolling.add(y_true, loss, slot, label, 1)
        self._recent.append((y_true, p_true, label))

    def report(self) -> dict[str, float]:
        """Current values, flat, for logs, Prometheus and snapshot headers."""
        return {
            "n": self.n,
            **self._cumulative.report(""),
            "rolling_n": len(self._recent),
            **self._rolling.report("rolling_"),
        }

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v:.4g}" for k, v in self.report().items())
        return f"ProgressiveMetrics(window={self.window}, {values})"


class _Trio:
    """The three metrics that move together, with River's values at a fraction of its cost.

    Log loss is River's own `LogLoss` (a running mean whose rounding depends on order).
    ROC AUC and accuracy are counts: River keeps ten confusion matrices for ROC AUC, one
    per threshold, updated in a Python loop; the same counts follow from which thresholds
    a probability exceeds, one histogram slot an example. `report` then computes exactly
    River's formulas on exactly the same (integer-valued) counts.
    """

    def __init__(self) -> None:
        self.log_loss: Any = metrics.LogLoss()
        self._positives = [0] * (_N_THRESHOLDS + 1)
        self._negatives = [0] * (_N_THRESHOLDS + 1)
        self._correct = 0
        self._total = 0

    def add(self, y_true: bool, loss: float, slot: int, label: bool, step: int) -> None:
        """Count an example (`step` 1) or take it back (-1): River's `LogLoss.update` and
        `revert` (the running mean of `stats.Mean`, with its own formulas, so the rounding
        is the same), and the counts."""
        mean = self.log_loss._mean
        if step > 0:
            mean.n += 1.0
            mean._mean += (1.0 / mean.n) * (loss - mean._mean)
        else:
            mean.n -= 1.0
            if mean.n == 0:
                mean._mean = 0.0
            else:
                mean._mean -= (1.0 / mean.n) * (loss - mean._mean)
        if y_true:
            self._positives[slot] += step
        else:
            self._negatives[slot] += step
        self._correct += step * (y_true == label)
        self._total += step

    def roc_auc(self) -> float:
        """River's ROCAUC.get() on the same counts."""
        tprs = [0.0] * _N_THRESHOLDS
        fprs = [0.0] * _N_THRESHOLDS
        all_pos, all_neg = sum(self._positives), sum(self._negatives)
        # Examples in slots above i count as predicted positive at threshold i.
        tp, fp = all_pos, all_neg
        for i in range(_N_THRESHOLDS):
            tp -= self._positives[i]
            fp -= self._negatives[i]
            tprs[i] = tp / all_pos if all_pos else 0.0
            fprs[i] = fp / all_neg if all_neg else 0.0
        return float(-integrate.trapezoid(x=fprs, y=tprs))

    def report(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}log_loss": float(self.log_loss.get()),
            f"{prefix}roc_auc": self.roc_auc(),
            f"{prefix}accuracy": self._correct / self._total if self._total else 0.0,
        }


def log_loss(y_true: bool, p_true: float) -> float:
    """One example's log loss as River's `LogLoss` takes it: the probability clamped into
    (0, 1) first."""
    p = max(min(p_true, 1 - 1e-15), 1e-15)
    return -math.log(p) if y_true else -math.log(1 - p)


def _slot(p_true: float) -> int:
    """Slot k: p exceeds the k lowest thresholds (River compares p_true > t)."""
    return bisect.bisect_left(_THRESHOLDS, p_true)


# River's ROCAUC() defaults: ten thresholds spanning [0, 1], the ends nudged outwards.
_N_THRESHOLDS = 10
_THRESHOLDS = [i / (_N_THRESHOLDS - 1) for i in range(_N_THRESHOLDS)]
_THRESHOLDS[0] -= 1e-7
_THRESHOLDS[-1] += 1e-7
