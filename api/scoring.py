"""Scoring a request's features with one variant: numpy when it can, River otherwise.

A request's features arrive as columns (`learner.features.features_many`): `LinearScorer`
(the logistic pipeline) and `FMScorer` (the factorization machine) score them without
building a row per candidate and agree with River's `predict_proba_one` to 1e-9
(tests/learner/test_linear.py, tests/learner/test_fmscorer.py, and through the API in
tests/api); any other model is asked row by row, as the learner asks it, with the rows
the columns describe (exactly `features()` of each candidate).
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from api.loading import LoadedVariant
from learner.columns import rows_of
from learner.features import FeatureColumns, Features
from learner.fmscorer import FMScorer
from learner.variant import p_true_of

Scores = npt.NDArray[np.float64]

NUMPY_LINEAR = "numpy-linear"
"""The scorer of the logistic pipeline, whatever kind built it: `LinearScorer`."""
NUMPY_FM = "numpy-fm"
"""The scorer of the factorization machine "fm" builds: `FMScorer`."""
RIVER = "river"
"""The scorer of every other model: River's own predict_proba_one, row by row."""


def scorer_name(variant: LoadedVariant) -> str:
    """Which scorer answers for `variant` (GET /models says it)."""
    if variant.scorer is None:
        return RIVER
    return NUMPY_FM if isinstance(variant.scorer, FMScorer) else NUMPY_LINEAR


def score_rows(variant: LoadedVariant, rows: Sequence[Features]) -> Scores:
    """P(purchase) of each row, as the learner's `Variant.predict` would give it."""
    if variant.scorer is not None:
        return variant.scorer.score_many(rows)
    predict = variant.model.predict_proba_one
    return np.fromiter((p_true_of(predict(row)) for row in rows), dtype=np.float64, count=len(rows))


def score_columns(variant: LoadedVariant, columns: FeatureColumns, n: int) -> Scores:
    """P(purchase) of each of the `n` candidates that `columns` describe."""
    if variant.scorer is not None:
        return variant.scorer.score_columns(columns, n)
    return score_rows(variant, rows_of(columns, n))


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
