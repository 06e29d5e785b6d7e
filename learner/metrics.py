"""Progressive validation metrics: every example is scored before the model learns it."""

from collections import deque
from typing import Any

from river import metrics


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
        self._cumulative.update(y_true, p_true, label)
        if len(self._recent) == self.window:
            self._rolling.revert(*self._recent.popleft())
        self._rolling.update(y_true, p_true, label)
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
    """The three River metrics that move together."""

    def __init__(self) -> None:
        self.log_loss: Any = metrics.LogLoss()
        self.roc_auc: Any = metrics.ROCAUC()
        self.accuracy: Any = metrics.Accuracy()

    def update(self, y_true: bool, p_true: float, label: bool) -> None:
        self.log_loss.update(y_true, p_true)
        self.roc_auc.update(y_true, p_true)
        self.accuracy.update(y_true, label)

    def revert(self, y_true: bool, p_true: float, label: bool) -> None:
        self.log_loss.revert(y_true, p_true)
        self.roc_auc.revert(y_true, p_true)
        self.accuracy.revert(y_true, label)

    def report(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}log_loss": float(self.log_loss.get()),
            f"{prefix}roc_auc": float(self.roc_auc.get()),
            f"{prefix}accuracy": float(self.accuracy.get()),
        }
