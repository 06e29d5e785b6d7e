"""A two-stage cascade per request: a cheap variant ranks every candidate, an expensive one
re-scores only a span of that ranking: its top `top`, or the `uncertain` candidates
nearest the cut after the `top`-th.

Both stages are variants of ONE loaded shard state (`ShardModel`): a request reads the
served state once, so the two versions a response names are always the same publish.
The re-scored candidates keep their span's places in the ranking, re-ordered by the
expensive score; the others keep the cheap order around them. Configured per shard
(`HEADRACE_CASCADE`: api/cascadespec.py).
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
    """Every candidate, best first: the cheap ranking with its re-scored span re-ordered
    by the expensive score."""


def stages(spec: CascadeSpec, shard: ShardModel) -> tuple[LoadedVariant, LoadedVariant]:
    """The (first, then) variants of `shard`; CascadeError if it lacks one."""
    why = problem(spec, shard)
    if why is not None:
        raise CascadeError(why)
    return shard.variants[spec.first], shard.variants[spec.then]


def run(then: LoadedVariant, spec: CascadeSpec, columns: FeatureColumns, cheap: Scores) -> Cascaded:
    """Re-score `spec`'s span of `cheap` (the first stage's scores of every candidate)."""
    ranked = cheap_order(cheap)
    start, stop = spec.span(len(cheap))
    picked = ranked[start:stop]
    expensive = score_columns(then, subset(columns, picked.tolist(), len(cheap)), len(picked))
    return merge(cheap, ranked, start, expensive)


def cheap_order(cheap: Scores) -> npt.NDArray[np.intp]:
    """Every candidate by the first stage's score, best first (equal scores keep candidate
    order)."""
    return np.argsort(-cheap, kind="stable")


def merge(cheap: Scores, ranked: npt.NDArray[np.intp], start: int, expensive: Scores) -> Cascaded:
    """The cascade's answer from the first stage's scores of every candidate, their order
    (`cheap_order`) and the second stage's scores of `ranked[start:start + len(expensive)]`."""
    stop = start + len(expensive)
    picked = ranked[start:stop]
    scores = cheap.copy()
    scores[picked] = expensive
    rescored = np.zeros(len(cheap), dtype=np.bool_)
    rescored[picked] = True
    by_new = picked[np.argsort(-expensive, kind="stable")]
    order: list[int] = [*ranked[:start].tolist(), *by_new.tolist(), *ranked[stop:].tolist()]
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
