"""Ranking and calibration numbers from scored examples: exact from arrays, bounded from bins.

The exact ROC AUC is `guards.ranking.roc_auc`, which the ranking guard shares. Every
function returns None where the number is undefined (no examples, or a class missing): a
0 or a NaN would read as a value.
"""

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def average_precision(y: Bools, p: Floats) -> float | None:
    """Exact PR AUC as average precision: the precision at each distinct score, weighted by the
    recall it adds; tied scores are one threshold (scikit-learn's definition)."""
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return None
    order = np.argsort(-p, kind="stable")
    scores, labels = p[order], y[order]
    # The last example of each run of equal scores closes a threshold.
    ends = [*np.flatnonzero(np.diff(scores)).tolist(), len(scores) - 1]
    true_pos = np.cumsum(labels, dtype=np.float64)[ends]
    predicted = np.asarray(ends, dtype=np.float64) + 1
    return _weighted_precision(true_pos, predicted, positives)


def roc_auc_se(y: Bools, p: Floats) -> float | None:
    """DeLong's standard error of the exact ROC AUC of `p` against `y` (DeLong, DeLong and
    Clarke-Pearson, Biometrics 1988): how far the AUC of this many examples, drawn again
    from the same traffic, would typically land from its mean. Each positive's share of
    the negatives ranked below it and each negative's share of the positives ranked above
    it (ties half), their variances over the counts. None below two of a class."""
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return None
    # Counting in the other class's sorted scores: a tie sits between "left" and "right".
    below = (np.searchsorted(neg, pos, "left") + np.searchsorted(neg, pos, "right")) / (2 * n)
    above = 1.0 - (np.searchsorted(pos, neg, "left") + np.searchsorted(pos, neg, "right")) / (2 * m)
    return float(np.sqrt(np.var(below, ddof=1) / m + np.var(above, ddof=1) / n))


def binned_roc_auc(positives: Floats, negatives: Floats) -> tuple[float, float] | None:
    """ROC AUC from per-bin counts (bins in increasing score order) and its worst-case error.

    Pairs in different bins are ordered by their bins; a pair inside one bin is counted half.
    Its true share lies between 0 and 1, so the estimate is off by at most half the
    within-bin pairs over P·N: the error returned. Scores that tie exactly inside a bin are
    counted right; the bound still includes them.
    """
    total_pos, total_neg = float(positives.sum()), float(negatives.sum())
    if total_pos == 0 or total_neg == 0:
        return None
    below = np.cumsum(negatives) - negatives
    pairs = total_pos * total_neg
    within = float(positives @ negatives) / 2
    return (float(positives @ below) + within) / pairs, within / pairs


def binned_average_precision(positives: Floats, negatives: Floats) -> float | None:
    """Average precision from per-bin counts (bins in increasing score order), each bin taken
    as one threshold: exact when no bin holds two distinct scores."""
    total_pos = float(positives.sum())
    if total_pos == 0 or float(negatives.sum()) == 0:
        return None
    used = (positives + negatives) > 0
    pos, neg = positives[used][::-1], negatives[used][::-1]
    true_pos = np.cumsum(pos)
    return _weighted_precision(true_pos, true_pos + np.cumsum(neg), total_pos)


def _weighted_precision(true_pos: Floats, predicted: Floats, positives: float) -> float:
    """The sum of (recall added at a threshold) * (precision there), thresholds from the highest."""
    recall_added = np.diff(true_pos, prepend=0.0) / positives
    return float(recall_added @ (true_pos / predicted))


def calibration(mean_prediction: float | None, positive_rate: float | None) -> float | None:
    """Mean predicted probability over the observed positive rate: 1 is calibrated on average;
    undefined without positives."""
    if mean_prediction is None or not positive_rate:
        return None
    return mean_prediction / positive_rate
