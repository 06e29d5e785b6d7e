"""Serving the factorization machine with numpy: every candidate of a request at once.

`FMScorer.from_model(model)` reads, once per model version, what the "fm" pipeline
(`learner.models`: scaled numbers and hashed strings into `learner.factorization.
FMClassifier`) computes for a row, and scores columns of candidates with it:

- StandardScaler: a numeric feature scales to (x - mean) / sqrt(var), or to 0.0 when its
  variance is 0 (never seen, or constant so far), which adds nothing; a missing one adds
  nothing either.
- FeatureHasher: a string feature `name` with value `v` becomes the bucket River's
  hasher gives the token "name=v", with value 1 (or -1 with `alternate_sign`). Without
  a hasher, the classifier one-hot encodes it as the key f"{name}_{v}" with value 1.
- FMClassifier: sigmoid(intercept + sum_j w_j x_j + sum_{i<j} <v_i, v_j> x_i x_j), a
  feature never learned having weight 0 and a zero latent vector (what our classifier's
  `predict_proba_one` gives). The pairwise sum is Rendle's identity,

      1/2 · sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2],

  for every candidate at once: the active features' latents gathered into one
  (candidates, features, factors) array, or one matrix product for the numeric ones.

Two strings of one row hashed into the same bucket are one feature of value 2 to River
(not two of value 1: the squared term differs), so such rows, rare with 32,768 buckets,
are scored by the model itself, as are columns whose types vary from row to row. The
numpy part is a snapshot of the model, and those rows ask the model as it is: build a new
scorer when the model changes (the API never changes a loaded model: it loads a new one).
"""

import numbers
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from learner.columns import Column, classify, rows_of
from learner.factorization import FMClassifier
from learner.linear import sigmoid
from learner.models import fm_parts
from learner.variant import p_true_of

Row = Mapping[str, Any]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]


class _Plan(NamedTuple):
    """What the fast path does with columns of given names and kinds (one a deployment)."""

    scalars: tuple[tuple[str, float, float], ...]
    """(name, mean, std) of each numeric feature given one value for every row."""
    scalar_rows: list[int]
    vectors: tuple[str, ...]
    """The numeric features given a value a row that move the score."""
    means: Floats
    stds: Floats
    """Columns: the means and standard deviations of `vectors`."""
    v: Floats
    w: Floats
    norms: Floats
    """The latents, weights and squared latent lengths of `vectors`, in their order."""
    strings: tuple[str, ...]
    """The string features given one value for every row."""
    string_vectors: tuple[str, ...]
    """The string features given a value a row."""


_PLANS = 64


class FMScorer:
    """P(True) of the "fm" pipeline for many rows at once."""

    def __init__(self, model: Any, scaler: Any, hasher: Any | None, fm: FMClassifier) -> None:
        self._model = model
        self._hasher = hasher
        self._intercept = float(fm.intercept)
        latents: Mapping[Hashable, Any] = fm.latents
        weights: Mapping[Hashable, float] = fm.weights
        keys = list(dict.fromkeys([*latents, *weights]))
        self._row: dict[Hashable, int] = {key: i for i, key in enumerate(keys)}
        self._zero = len(keys)
        """The row of every feature never learned: a zero weight and a zero latent vector."""
        factors = fm.n_factors
        vectors = np.zeros((len(keys) + 1, factors), dtype=np.float64)
        if latents:
            rows = [self._row[key] for key in latents]
            vectors[rows] = np.array([latents[key] for key in latents]).reshape(-1, factors)
        self._v: Floats = vectors
        self._norms: Floats = (vectors * vectors).sum(axis=1)
        """Each row's squared length: sum_f v_if^2, what the identity's second term needs."""
        self._w: Floats = np.zeros(len(keys) + 1, dtype=np.float64)
        for key, w in weights.items():
            self._w[self._row[key]] = w
        # (mean, std) of every numeric feature whose scaled value is not always 0.
        self._scale: dict[str, tuple[float, float]] = {
            name: (float(scaler.means[name]), float(var**0.5))
            for name, var in scaler.vars.items()
            if var
        }
        self._keys: dict[tuple[str, str], tuple[int, float, int]] = {}
        self._plans: dict[tuple[tuple[str, ...], ...], _Plan] = {}
        # Every string feature has value 1 unless the hasher signs them.
        self._unit = hasher is None or not hasher.alternate_sign

    @classmethod
    def from_model(cls, model: Any) -> "FMScorer | None":
        """A scorer for `model`, or None if it is not the pipeline "fm" builds."""
        parts = fm_parts(model)
        if parts is None:
            return None
        scaler, hasher, fm = parts
        return cls(model, scaler, hasher, fm)

    def score_many(self, rows: Sequence[Row]) -> Floats:
        """P(True) for each row, as the model's `predict_proba_one(row)[True]` gives it."""
        names = dict.fromkeys(name for row in rows for name in row)
        columns = {name: [row.get(name) for row in rows] for name in names}
        return self.score_columns(columns, len(rows))

    def score_columns(self, columns: Mapping[str, Column], n: int) -> Floats:
        """`score_many` of the `n` rows that `columns` describe, without building the rows.

        A scalar column is every row's value; a sequence of length `n` gives row i its item
        i, None for a row without the feature.
        """
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        if self._unit:
            fast = self._fast(columns, n)
            if fast is not None:
                return fast
        split = self._split(columns, n)
        if split is None:  # types that vary from row to row: River reads them row by row
            return self._by_model(rows_of(columns, n))
        numeric, categorical = split
        if self._hasher is None and _clash_possible([*numeric, *categorical], categorical):
            return self._by_model(rows_of(columns, n))
        linear = np.full(n, self._intercept, dtype=np.float64)
        total = np.zeros((n, self._v.shape[1]), dtype=np.float64)
        squares = np.zeros(n, dtype=np.float64)
        if numeric:
            index = [self._row.get(name, self._zero) for name in numeric]
            scaled = np.empty((n, len(numeric)), dtype=np.float64)
            for j, values in enumerate(numeric.values()):
                scaled[:, j] = values
            linear += scaled @ self._w[index]
            total += scaled @ self._v[index]
            squares += (scaled * scaled) @ self._norms[index]
        clashes: npt.NDArray[np.bool_] | None = None
        if categorical:
            rows = np.empty((n, len(categorical)), dtype=np.intp)
            values = np.empty((n, len(categorical)), dtype=np.float64)
            buckets = np.empty((n, len(categorical)), dtype=np.int64)
            for j, (name, column) in enumerate(categorical.items()):
                rows[:, j], values[:, j], buckets[:, j] = self._encode(name, column, n, j)
            linear += (values * self._w[rows]).sum(axis=1)
            total += np.einsum("nc,nck->nk", values, self._v[rows])
            squares += np.einsum("nc,nc->n", values * values, self._norms[rows])
            if self._hasher is not None and len(categorical) > 1:
                ordered = np.sort(buckets, axis=1)
                clashes = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        pairwise = 0.5 * (np.einsum("nk,nk->n", total, total) - squares)
        scores = sigmoid(linear + pairwise)
        if clashes is not None and clashes.any():
            self._rescore(scores, clashes, columns, n)
        return scores

    # -- the fast path: columns of the API's shapes ----------------------------------

    def _fast(self, columns: Mapping[str, Column], n: int) -> Floats | None:
        """score_columns of columns that are each all numbers or all strings (what
        `features_many` gives), every string feature of value 1; None for any other."""
        numeric: dict[str, Any] = {}
        strings: dict[str, Any] = {}
        for name, column in columns.items():
            kind, values = classify(name, column, n)
            if kind == "numeric":
                numeric[name] = values
            elif kind == "categorical":
                strings[name] = values
            elif kind != "absent":
                return None
        plan = self._plan(numeric, strings)
        if plan is None:
            return None
        # What every row shares (the user's and the context's features), once: their
        # weights, the sum of their latents and of their squared lengths.
        shared = self._intercept
        shared_total = np.zeros(self._v.shape[1], dtype=np.float64)
        shared_squares = 0.0
        if plan.scalars:
            z = np.array([(numeric[name] - mean) / std for name, mean, std in plan.scalars])
            rows = plan.scalar_rows
            shared += float(z @ self._w[rows])
            shared_total += z @ self._v[rows]
            shared_squares += float((z * z) @ self._norms[rows])
        fixed = [self._key(name, strings[name])[0] for name in plan.strings]
        if fixed:
            shared += float(self._w[fixed].sum())
            shared_total += self._v[fixed].sum(axis=0)
            shared_squares += float(self._norms[fixed].sum())
        linear = np.full(n, shared, dtype=np.float64)
        total = np.broadcast_to(shared_total, (n, len(shared_total)))
        squares = np.full(n, shared_squares, dtype=np.float64)
        if plan.vectors:
            matrix = np.array([numeric[name] for name in plan.vectors], dtype=np.float64)
            scaled = (matrix.reshape(len(plan.vectors), n) - plan.means) / plan.stds
            linear += plan.w @ scaled
            total = total + scaled.T @ plan.v
            squares += plan.norms @ (scaled * scaled)
        clashes: npt.NDArray[np.bool_] | None = None
        if plan.string_vectors:
            looked_up = [self._rows_of(name, strings[name]) for name in plan.string_vectors]
            rows_of_each = np.array([rows for rows, _ in looked_up], dtype=np.intp)
            linear += self._w[rows_of_each].sum(axis=0)
            total = total + self._v[rows_of_each].sum(axis=0)
            squares += self._norms[rows_of_each].sum(axis=0)
            # Two columns can put a row's strings in one bucket only if they have a learned
            # bucket in common: most requests have none, and skip the check.
            distinct = [found for _, found in looked_up] + [{row} for row in fixed]
            learned = [found - {self._zero} for found in distinct]
            if self._hasher is not None and len(set().union(*learned)) < sum(map(len, learned)):
                clashes = self._clashes(rows_of_each, fixed, n)
        pairwise = 0.5 * (np.einsum("nk,nk->n", total, total) - squares)
        scores = sigmoid(linear + pairwise)
        if clashes is not None and clashes.any():
            self._rescore(scores, clashes, columns, n)
        return scores

    def _plan(self, numeric: Mapping[str, Any], strings: Mapping[str, Any]) -> _Plan | None:
        """How to score columns of these names and kinds; None when keys could clash."""
        vectors = tuple(name for name, values in numeric.items() if values.__class__ is not float)
        string_vectors = tuple(
            name for name, values in strings.items() if not isinstance(values, str)
        )
        key = (tuple(numeric), vectors, tuple(strings), string_vectors)
        if key in self._plans:
            return self._plans[key]
        if self._hasher is None and _clash_possible([*numeric, *strings], strings):
            return None
        used = [name for name in vectors if name in self._scale]
        scalars = tuple(
            (name, *self._scale[name])
            for name in numeric
            if name not in vectors and name in self._scale
        )
        rows = [self._row.get(name, self._zero) for name in used]
        plan = _Plan(
            scalars=scalars,
            scalar_rows=[self._row.get(name, self._zero) for name, _, _ in scalars],
            vectors=tuple(used),
            means=np.array([[self._scale[name][0]] for name in used], dtype=np.float64),
            stds=np.array([[self._scale[name][1]] for name in used], dtype=np.float64),
            v=self._v[rows],
            w=self._w[rows],
            norms=self._norms[rows],
            strings=tuple(name for name in strings if name not in string_vectors),
            string_vectors=string_vectors,
        )
        if len(self._plans) >= _PLANS:  # callers that vary their names: keep it bounded
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _rows_of(self, name: str, values: Sequence[str]) -> tuple[list[int], set[int]]:
        """Each row's latent row for one string column, and the distinct ones."""
        # Candidates share few values (brands, categories): each is looked up once.
        found = {value: self._key(name, value)[0] for value in dict.fromkeys(values)}
        return [found[value] for value in values], set(found.values())

    def _clashes(self, rows: Ints, fixed: list[int], n: int) -> npt.NDArray[np.bool_]:
        """Rows where two strings share a learned bucket (hence a latent row); strings in
        buckets never learned add nothing either way."""
        if fixed:
            shared = np.repeat(np.array(fixed, dtype=np.intp)[:, None], n, axis=1)
            rows = np.concatenate([rows, shared])
        ordered = np.sort(rows, axis=0)
        same = (ordered[1:] == ordered[:-1]) & (ordered[1:] != self._zero)
        clashes: npt.NDArray[np.bool_] = same.any(axis=0)
        return clashes

    def _rescore(
        self,
        scores: Floats,
        clashes: npt.NDArray[np.bool_],
        columns: Mapping[str, Column],
        n: int,
    ) -> None:
        """Two strings in one bucket: one feature of value 2 to River. Rare; the model
        scores those rows itself."""
        picked = np.flatnonzero(clashes)
        rows = rows_of(columns, n)
        scores[picked] = self._by_model([rows[i] for i in picked])

    # -- columns ---------------------------------------------------------------------

    def _split(
        self, columns: Mapping[str, Column], n: int
    ) -> tuple[dict[str, float | Floats], dict[str, str | list[str | None]]] | None:
        """The scaled numeric columns that move the score, and the string columns; None
        when a column mixes types."""
        numeric: dict[str, float | Floats] = {}
        categorical: dict[str, str | list[str | None]] = {}
        for name, column in columns.items():
            kind, values = classify(name, column, n)
            if kind == "mixed":
                kind, values = _with_gaps(name, column, n)
            if kind == "mixed":
                return None
            if kind == "categorical":
                categorical[name] = values
            elif name not in self._scale:
                continue  # absent, or scaled to 0.0 whatever its value
            elif kind == "numeric":
                mean, std = self._scale[name]
                if isinstance(values, list | np.ndarray):
                    numeric[name] = (np.asarray(values, dtype=np.float64) - mean) / std
                else:
                    numeric[name] = (values - mean) / std
            elif kind == "gaps":
                # A row without the feature (None) adds nothing.
                mean, std = self._scale[name]
                numeric[name] = np.array(
                    [0.0 if v is None else (v - mean) / std for v in values], dtype=np.float64
                )
        return numeric, categorical

    def _encode(
        self, name: str, column: str | list[str | None], n: int, j: int
    ) -> tuple[Ints | int, Floats | float, npt.NDArray[np.int64] | int]:
        """Each row's (latent row, value, bucket) for one string column."""
        if isinstance(column, str):
            return self._key(name, column)
        # Candidates share few values (brands, categories): each is encoded once.
        # A row without the feature: the zero row, value 0, a bucket no other can have.
        absent = (self._zero, 0.0, -1 - j)
        found = {value: absent if value is None else self._key(name, value) for value in column}
        encoded = [found[value] for value in column]
        rows, values, buckets = zip(*encoded, strict=True)
        return (
            np.fromiter(rows, dtype=np.intp, count=n),
            np.fromiter(values, dtype=np.float64, count=n),
            np.fromiter(buckets, dtype=np.int64, count=n),
        )

    def _key(self, name: str, value: str) -> tuple[int, float, int]:
        cached = self._keys.get((name, value))
        if cached is not None:
            return cached
        if self._hasher is None:
            key: Hashable = f"{name}_{value}"
            x = 1.0
            bucket = 0  # unused: without a hasher keys cannot collide (_clash_possible)
        else:
            ((bucket, x),) = self._hasher.transform_one({name: value}).items()
            key = bucket
        found = (self._row.get(key, self._zero), float(x), bucket)
        if len(self._keys) > 100_000:  # a caller that sends ever new values: stay bounded
            self._keys.clear()
        self._keys[(name, value)] = found
        return found

    def _by_model(self, rows: Sequence[Row]) -> Floats:
        predict = self._model.predict_proba_one
        return np.fromiter(
            (p_true_of(predict(row)) for row in rows), dtype=np.float64, count=len(rows)
        )


def _with_gaps(name: str, column: Column, n: int) -> tuple[str, Any]:
    """A sequence of numbers or strings with None for rows without the feature."""
    if not isinstance(column, Sequence | np.ndarray) or isinstance(column, str):
        return "mixed", None
    values: list[Any] = list(column.tolist() if isinstance(column, np.ndarray) else column)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} rows")
    present = [v for v in values if v is not None]
    if present and all(v.__class__ is str for v in present):
        return "categorical", values
    if all(isinstance(v, numbers.Real) for v in present):
        return "gaps", [None if v is None else float(v) for v in values]
    return "mixed", None


def _clash_possible(names: Sequence[str], categorical: Mapping[str, Any]) -> bool:
    """Without a hasher, whether a one-hot key f"{name}_{value}" could be another feature's
    name or another one-hot key (River keeps one of them, by row order)."""
    prefixes = [f"{name}_" for name in categorical]
    return any(other.startswith(prefix) for prefix in prefixes for other in names)
