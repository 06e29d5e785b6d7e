"""A two-stage cascade per request: a cheap variant ranks every candidate, an expensive one
re-scores only the cheap ranking's top `top`.

Both stages are variants of ONE loaded shard state (`ShardModel`): a request reads the
served state once, so the two versions a response names are always the same publish.
The re-scored candidates come first in the ranking, ordered by the expensive score; the
others follow in the cheap order. Configured per shard (`HEADRACE_CASCADE`: api/cascadespec.py).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from api.cascadespec import CascadeSpec
from api.errors import CascadeError
from api.loading import LoadedVariant, ShardModel
from api.scoring import Scores, score_columns
from learner.features import FeatureColumns

FIRST, THEN = "first", "then"
"""What a response's `stage` says of a candidate: scored by the cheap variant only, or
re-scored by the expensive one."""


def problem(spec: CascadeSpec, shard: ShardModel) -> str | None:
    """Why `shard`'s loaded state cannot run `spec` (a variant it does not publish), if so."""
    for name in (spec.first, spec.then):
        if name not in shard.variants:
            return (
                f"shard {shard.shard}: HEADRACE_CASCADE names variant {name!r}, which the "
                f"shard does not publish (it has: {', '.join(shard.variant_names)})"
            )
    return None


@dataclass(frozen=True, slots=True)
class Cascaded:
    scores: Scores
    """Every candidate's final score: the expensive one where it re-scored, else the cheap."""
    rescored: npt.NDArray[np.bool_]
    """Which candidates the expensive variant scored."""
    order: list[int]
    """Every candidate, best first: the re-scored ones by their new score, then the rest."""


def stages(spec: CascadeSpec, shard: ShardModel) -> tuple[LoadedVariant, LoadedVariant]:
    """The (first, then) variants of `shard`; CascadeError if it lacks one."""
    why = problem(spec, shard)
    if why is not None:
        raise CascadeError(why)
    return shard.variants[spec.first], shard.variants[spec.then]


def run(then: LoadedVariant, top: int, columns: FeatureColumns, cheap: Scores) -> Cascaded:
    """Re-score the `top` best of `cheap` (the first stage's scores of every candidate)."""
    head = head_of(cheap, top)
    expensive = score_columns(then, subset(columns, head.tolist(), len(cheap)), len(head))
    return merge(cheap, head, expensive)


def head_of(cheap: Scores, top: int) -> npt.NDArray[np.intp]:
    """The candidates the second stage re-scores: the `top` best cheap scores, best first
    (equal scores keep candidate order)."""
    return np.argsort(-cheap, kind="stable")[: min(top, len(cheap))]


def merge(cheap: Scores, head: npt.NDArray[np.intp], expensive: Scores) -> Cascaded:
    """The cascade's answer from the first stage's scores of every candidate and the
    second stage's scores of `head` (as `head_of` gave it)."""
    n = len(cheap)
    scores = cheap.copy()
    scores[head] = expensive
    rescored = np.zeros(n, dtype=np.bool_)
    rescored[head] = True
    by_new = head[np.argsort(-expensive, kind="stable")]
    rest = np.argsort(-cheap, kind="stable")[len(head) :]
    order: list[int] = [*by_new.tolist(), *rest.tolist()]
    return Cascaded(scores, rescored, order)


def subset(columns: FeatureColumns, rows: list[int], n: int) -> FeatureColumns:
    """The columns of the candidates `rows` (in that order); scalars stay shared."""
    out: FeatureColumns = {}
    for name, column in columns.items():
        if isinstance(column, float | str) or len(column) != n:
            out[name] = column
        else:
            picked: Any = [column[i] for i in rows]
            out[name] = picked
    return out
