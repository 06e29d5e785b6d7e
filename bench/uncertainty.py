"""How much of a quality figure is the sample it was measured on: standard errors.

- The held-out figures are exact in the labels (expected under the hidden probabilities)
  but not in the requests: 1,000 storefront requests are one sample of the traffic.
  `held_out_errors` resamples the requests (bootstrap, whole requests, so that the ten
  candidates of one request stay together) and gives the standard error of the AUC, of
  its ratio to the hidden model's (paired: both on each resample) and of the calibration.
  It does not cover the learner's own variation (another stream of the same shape would
  learn another model): the spread over seeds shows that.
- The rolling AUC the dashboard shows is one draw of its window's labels. `draw_error` is
  its exact spread under the hidden probabilities (labels drawn again and again for the
  same served predictions); `delong_error` is DeLong's estimate of the same from the
  window's own labels and scores, what an operator can compute without the simulator.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from tests.heldout import expected_auc

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class HeldOutErrors:
    auc: float
    ratio: float
    calibration: float
    resamples: int


def held_out_errors(
    p: Floats, scores: Floats, k: int, *, resamples: int = 500, seed: int = 0
) -> HeldOutErrors:
    """Bootstrap standard errors over the requests of `k` candidates each (`p` and `scores`
    request after request, as `tests.heldout` lays them out)."""
    n = len(p) // k
    if n * k != len(p) or len(scores) != len(p):
        raise ValueError(f"{len(p)} hidden and {len(scores)} scores are not requests of {k}")
    rng = np.random.default_rng(seed)
    p_r, s_r = p.reshape(n, k), scores.reshape(n, k)
    aucs, ratios, cals = [], [], []
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        pb, sb = p_r[pick].ravel(), s_r[pick].ravel()
        auc = expected_auc(pb, sb)
        aucs.append(auc)
        ratios.append(auc / expected_auc(pb, pb))
        cals.append(float(sb.mean() / pb.mean()))
    return HeldOutErrors(
        float(np.std(aucs, ddof=1)),
        float(np.std(ratios, ddof=1)),
        float(np.std(cals, ddof=1)),
        resamples,
    )


def exact_auc(ys: Bools, ps: Floats) -> float:
    """ROC AUC of scores `ps` against labels `ys`, ties counting half."""
    return expected_auc(ys.astype(np.float64), ps)


def draw_error(p: Floats, ps: Floats, *, draws: int = 300, seed: int = 0) -> float:
    """Standard deviation of the AUC of `ps` when each label is drawn with probability `p`:
    the rolling AUC's own noise, for the predictions it scored."""
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(draws):
        ys = rng.random(len(p)) < p
        if ys.any() and not ys.all():
            aucs.append(exact_auc(ys, ps))
    return float(np.std(aucs, ddof=1))


def delong_error(ys: Bools, ps: Floats) -> float:
    """DeLong's standard error of the AUC of `ps` against `ys` (DeLong, DeLong and
    Clarke-Pearson, Biometrics 1988), from midranks: each positive's share of negatives
    ranked below it and each negative's share of positives above it, their variances
    over the positives' and the negatives' counts."""
    pos, neg = ps[ys], ps[~ys]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    v10 = (ranks[:m] - rankdata(pos)) / n
    v01 = 1.0 - (ranks[m:] - rankdata(neg)) / m
    return float(np.sqrt(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n))
