"""Held-out quality against the simulator's hidden purchase model, for tests and benchmarks.

A held-out set is storefront requests the learner never saw (`Store.request_for`: a user
drawn as traffic draws them, a context, candidates at position 0), each candidate with
the hidden probability that the user buys it. A model's ranking is measured by its
expected ROC AUC under those probabilities: the AUC that outcomes drawn from them give
on average, computed exactly instead of from one noisy draw. The hidden model's own
expected AUC on the same requests is the best any model can reach; the ratio of the two
is the figure the docs report.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from headrace.sim.simulator import SimulatorConfig, world
from headrace.sim.store_world import ShopRequest

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HeldOut:
    requests: list[ShopRequest]
    p: Floats
    """Every candidate's hidden purchase probability, request after request."""
    drifted: bool


def held_out(
    config: SimulatorConfig, n: int, *, k: int = 10, seed: int = 1_000_003, drifted: bool = False
) -> HeldOut:
    """`n` requests of `k` candidates from `config`'s store, from a generator of their own."""
    store = world(config)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, seed]))
    requests = [
        store.request_for(store.pick_user(rng), rng, k=k, drifted=drifted) for _ in range(n)
    ]
    p = np.array([c.p_purchase for r in requests for c in r.candidates], dtype=np.float64)
    return HeldOut(requests, p, drifted)


def expected_auc(p: Floats, scores: Floats) -> float:
    """E[ROC AUC] when each example is positive with probability p (independently).

    Over ordered pairs (i, j), i != j: p_i (1 - p_j) weighs "i positive, j negative";
    the pair counts 1 when s_i > s_j and 1/2 on a tie. This is the ratio of the expected
    counts, which is what the AUC of many draws converges to.
    """
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], p[order]
    neg = 1.0 - pos
    _, start = np.unique(s, return_index=True)
    pos_g = np.add.reduceat(pos, start)
    neg_g = np.add.reduceat(neg, start)
    below = np.concatenate(([0.0], np.cumsum(neg_g)[:-1]))
    self_pairs = float(np.sum(pos * neg))
    numerator = float(np.sum(pos_g * (below + 0.5 * neg_g))) - 0.5 * self_pairs
    denominator = float(pos.sum() * neg.sum()) - self_pairs
    return numerator / denominator


@dataclass(frozen=True)
class Quality:
    auc: float
    """Expected ROC AUC of the model's scores."""
    hidden_auc: float
    """Expected ROC AUC of the hidden model itself on the same requests: the limit."""
    calibration: float
    """Mean predicted probability over the mean hidden probability (1.0 is calibrated)."""

    @property
    def ratio(self) -> float:
        return self.auc / self.hidden_auc


def quality(data: HeldOut, score: Callable[[ShopRequest], Floats]) -> Quality:
    """How well `score` (P(purchase) of each candidate of a request) does on `data`."""
    scores = np.concatenate([score(r) for r in data.requests])
    return Quality(
        expected_auc(data.p, scores),
        expected_auc(data.p, data.p),
        float(scores.mean() / data.p.mean()),
    )
