"""Scoring a request's feature rows with one variant: numpy when linear, River otherwise.

`LinearScorer` scores every candidate in one product and agrees with River's
`predict_proba_one` to 1e-9 (tests/learner/test_linear.py, and through the API in
tests/api); any other model is asked row by row, as the learner asks it.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from api.loading import LoadedVariant
from learner.features import Features
from learner.variant import p_true_of

Scores = npt.NDArray[np.float64]


def score_rows(variant: LoadedVariant, rows: Sequence[Features]) -> Scores:
    """P(purchase) of each row, as the learner's `Variant.predict` would give it."""
    if variant.scorer is not None:
        return variant.scorer.score_many(rows)
    predict = variant.model.predict_proba_one
    return np.fromiter((p_true_of(predict(row)) for row in rows), dtype=np.float64, count=len(rows))


def ranking(scores: Scores, top_k: int | None) -> list[int]:
    """Candidate indices to return: all in order, or the best `top_k` (ties: first wins)."""
    if top_k is None:
        return list(range(len(scores)))
    # A stable sort of the negated scores keeps equal scores in candidate order.
    order = np.argsort(-scores, kind="stable")
    return order[:top_k].tolist()  # type: ignore[no-any-return]


def compare(served: Scores, shadow: Scores) -> tuple[float, bool]:
    """(mean absolute difference, whether both rank the same candidate first)."""
    gap = float(np.mean(np.abs(served - shadow)))
    return gap, int(np.argmax(served)) == int(np.argmax(shadow))
