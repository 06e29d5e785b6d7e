"""Serving the logistic pipeline with numpy: every candidate of a request in one product.

`LinearScorer.from_model(model)` reads, once per model version, what River's pipeline
(`learner.models`, kind "logreg") would compute for a row and turns it into arrays:

- StandardScaler: a numeric feature whose running variance is 0 (never seen, or seen
  constant so far) scales to 0.0 whatever its value, so it is left out; every other one
  contributes ((x - mean) / sqrt(var)) * weight = (x - mean) * coef.
- OneHotEncoder: a string feature `name` with value `v` becomes the key f"{name}_{v}" with
  value 1, so it contributes the weight of that key, or nothing if there is none.
- TransformerUnion: on a key clash the numeric side wins (River keeps the first
  transformer's value), and one-hot keys that coincide count once.
- LogisticRegression: sigmoid(intercept + dot), with River's clamp to 0 and 1 beyond 30.

A missing numeric feature is filled with its own mean, so it contributes exactly 0. The
scorer is a snapshot: build a new one when the model changes.
"""

import functools
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from learner.columns import ByKey, Column, classify, rows_of
from learner.models import logreg_parts

Row = Mapping[str, Any]
"""A candidate's features: name -> float (numeric) or str (categorical); others are ignored."""
Floats = npt.NDArray[np.float64]


class _Odd(NamedTuple):
    """A numeric feature with a non-finite mean, variance or weight: River's arithmetic, as is."""

    name: str
    mean: float
    std: float
    weight: float


class _Plan(NamedTuple):
    """What `score_columns` does with columns of given names and kinds."""

    scalars: tuple[tuple[str, float, float], ...]
    """(name, mean, coef) of each numeric feature given as one value for every row."""
    vectors: tuple[str, ...]
    """The numeric features given a value per row that move the score, in `coefs` order."""
    coefs: "Floats"
    means: "Floats"
    """A column: the means of `vectors`."""
    vector_terms: tuple[tuple[str, float, float], ...]
    """(name, mean, coef) of each of `vectors`, for a few rows in Python floats."""
    keyed: tuple[tuple[str, float, float], ...]
    """(name, mean, coef) of each numeric `ByKey` column that moves the score."""


_PLANS = 64
_FEW_ROWS = 4


class LinearScorer:
    """P(True) of River's logistic pipeline for many rows at once."""

    def __init__(
        self,
        intercept: float,
        means: Mapping[str, float],
        variances: Mapping[str, float],
        weights: Mapping[str, float],
    ) -> None:
        self._intercept = float(intercept)
        self._weights = dict(weights)
        names: list[str] = []
        means_: list[float] = []
        coefs: list[float] = []
        self._odd: list[_Odd] = []
        for name, var in variances.items():
            if not var:  # River's `... if v else 0.0`: the feature adds nothing
                continue
            mean, weight = means.get(name, 0.0), self._weights.get(name, 0.0)
            # River's own `var**0.5`; a NaN (or, impossibly, negative) variance gives NaN.
            std = var**0.5 if var > 0 else math.nan
            coef = weight / std
            if all(map(math.isfinite, (mean, std, weight, coef))):
                names.append(name)
                means_.append(mean)
                coefs.append(coef)
            else:
                self._odd.append(_Odd(name, mean, std, weight))
        self._names = tuple(names)
        self._means: Floats = np.array(means_, dtype=np.float64)
        self._coefs: Floats = np.array(coefs, dtype=np.float64)
        self._mean_list: list[float] = means_
        self._coef_list: list[float] = coefs
        self._column: dict[str, int] = {name: j for j, name in enumerate(names)}
        self._plans: dict[tuple[tuple[Any, ...], ...], _Plan | None] = {}
        # Rows missing none of the numeric features take the C-speed path (itemgetter).
        self._get: Callable[[Row], Any] = operator.itemgetter(*names) if names else _nothing
        # A one-hot key is f"{name}_{value}", so only a string feature whose name is a
        # weight key cut at an underscore can hit a weight: looking those few names up in a
        # row is cheaper than walking all of its items.
        self._prefixes, self._nested = _prefixes_of(tuple(self._weights))

    @classmethod
    def from_model(cls, model: Any) -> "LinearScorer | None":
        """A scorer for `model`, or None if it is not the pipeline `learner.models` builds."""
        parts = logreg_parts(model)
        if parts is None:
            return None
        scaler, logreg = parts
        weights = logreg._weights.to_dict()
        if not all(isinstance(key, str) for key in weights):
            return None
        return cls(logreg.intercept, dict(scaler.means), dict(scaler.vars), weights)

    @property
    def n_numeric(self) -> int:
        """Numeric features that move the score."""
        return len(self._names)

    def score_many(self, rows: Sequence[Row]) -> Floats:
        """P(True) for each row, as River's `predict_proba_one(row)[True]` would give it."""
        n = len(rows)
        z = np.full(n, self._intercept, dtype=np.float64)
        if n == 0:
            return z
        if self._names:
            z += (self._numeric_matrix(rows) - self._means) @ self._coefs
        if self._prefixes:
            z += self._one_hot_sums(rows)
        if self._odd:
            z += np.fromiter(map(self._odd_sum, rows), dtype=np.float64, count=n)
        return sigmoid(z)

    def score_columns(self, columns: Mapping[str, Column], n: int) -> Floats:
        """`score_many` of the `n` rows that `columns` describe, without building the rows.

        A scalar column is every row's value (the user and the context, shared by every
        candidate); a sequence (list, tuple, 1-D array) of length `n` gives row i its item i.
        Mixed or exotic columns, and name clashes River would resolve row by row, are
        scored through `score_many`, so the result is the same whatever the input.
        """
        numeric: dict[str, Any] = {}
        categorical: dict[str, Any] = {}
        # A handful of rows read a ByKey column as its rows: summing by key costs more.
        many = n > _FEW_ROWS
        for name, column in columns.items():
            kind, values = classify(name, column, n, keyed=many)
            if kind == "numeric":
                numeric[name] = values
            elif kind == "categorical":
                categorical[name] = values
            elif kind == "mixed":
                return self.score_many(rows_of(columns, n))
        plan = self._plan(numeric, categorical)
        if plan is None:
            return self.score_many(rows_of(columns, n))
        # A scalar column (the user's and the context's features) adds the same to every
        # row, once; the per-row numeric columns go into one matrix-vector product, the
        # per-row one-hot weights into one array.
        shared = self._intercept
        for name, mean, coef in plan.scalars:
            shared += (numeric[name] - mean) * coef
        # A ByKey column (what only a candidate's category decides) adds its terms once
        # per key, into one sum per key that each row then takes through its key.
        by_key: dict[int, tuple[Sequence[Any], dict[Any, float]]] = {}
        for name, mean, coef in plan.keyed:
            keyed: ByKey[Any, float] = numeric[name]
            sums, table = _sums(by_key, keyed), keyed.table
            for key in sums:
                sums[key] += (table[key] - mean) * coef
        weight = self._weights.get
        hits: Iterator[float] | None = None
        for name, values in categorical.items():
            if isinstance(values, str):
                shared += weight(f"{name}_{values}", 0.0)
                continue
            if isinstance(values, ByKey):
                sums, table = _sums(by_key, values), values.table
                for key in sums:
                    sums[key] += weight(f"{name}_{table[key]}", 0.0)
                continue
            # Candidates share few values (brands, categories): format each key once.
            weights = dict.fromkeys(values, 0.0)
            for value in weights:
                weights[value] = weight(f"{name}_{value}", 0.0)
            looked_up = map(weights.__getitem__, values)
            hits = looked_up if hits is None else map(operator.add, hits, looked_up)
        for keys, sums in by_key.values():
            looked_up = map(sums.__getitem__, keys)
            hits = looked_up if hits is None else map(operator.add, hits, looked_up)
        if n <= _FEW_ROWS:
            return self._score_few(plan, numeric, shared, hits, n)
        z = np.full(n, shared, dtype=np.float64)
        if plan.vectors:
            vectors = [numeric[name] for name in plan.vectors]
            matrix = np.array(vectors, dtype=np.float64).reshape(len(vectors), n)
            z += plan.coefs @ (matrix - plan.means)
        if hits is not None:
            z += np.fromiter(hits, dtype=np.float64, count=n)
        return sigmoid(z)

    @staticmethod
    def _score_few(
        plan: "_Plan",
        numeric: Mapping[str, Any],
        shared: float,
        hits: Iterable[float] | None,
        n: int,
    ) -> Floats:
        """score_columns' last steps for a handful of rows, in Python floats: numpy's cost
        per call is most of the time at one candidate."""
        one_hot = list(hits) if hits is not None else [0.0] * n
        terms = [(numeric[name], mean, coef) for name, mean, coef in plan.vector_terms]
        scores: list[float] = []
        for i in range(n):
            z = shared
            for values, mean, coef in terms:
                z += (values[i] - mean) * coef
            scores.append(_sigmoid_one(z + one_hot[i]))
        return np.array(scores, dtype=np.float64)

    # -- rows ------------------------------------------------------------------------

    def _numeric_matrix(self, rows: Sequence[Row]) -> Floats:
        get = self._get
        try:
            matrix = np.array([get(row) for row in rows])
            # A string (unicode or object dtype) or None (object) among the values: River's
            # numeric side skips it, so it is filled with the mean, one row at a time.
            if matrix.dtype.kind in "fiub":
                return matrix.reshape(len(rows), len(self._names)).astype(np.float64, copy=False)
        # A row lacks a feature (KeyError), or a value is an array (ragged, wrong shape).
        except (KeyError, ValueError, TypeError):
            pass
        return self._numeric_matrix_slowly(rows)

    def _numeric_matrix_slowly(self, rows: Sequence[Row]) -> Floats:
        pairs = list(zip(self._names, self._means.tolist(), strict=True))
        out = [[_number_or(row.get(name), mean) for name, mean in pairs] for row in rows]
        return np.array(out, dtype=np.float64).reshape(len(rows), len(pairs))

    def _one_hot_sums(self, rows: Sequence[Row]) -> list[float]:
        # One loop over every row (no call per row): this is most of score_many's Python time.
        weight = self._weights.get
        prefixes = self._prefixes
        nested = self._nested
        sums: list[float] = []
        for row in rows:
            total = 0.0
            hits: set[str] = set()
            for name in prefixes:
                value = row.get(name)
                if value.__class__ is not str and (value is None or not isinstance(value, str)):
                    continue
                key = f"{name}_{value}"
                w = weight(key)
                if w is None:
                    continue
                # The numeric side of the union owns this key in this row.
                if key in row and _is_number(row[key]):
                    continue
                if nested:
                    if key in hits:
                        continue
                    hits.add(key)
                total += w
            sums.append(total)
        return sums

    def _odd_sum(self, row: Row) -> float:
        total = 0.0
        for odd in self._odd:
            value: Any = row.get(odd.name)
            if _is_number(value):
                total += ((value - odd.mean) / odd.std) * odd.weight
        return total

    # -- columns ---------------------------------------------------------------------

    def _plan(self, numeric: Mapping[str, Any], categorical: Mapping[str, Any]) -> "_Plan | None":
        """How to score columns of these names and kinds; None when names could clash.

        Requests of one deployment send the same names every time: the plan is kept.
        """
        # The numeric columns' classes say which are scalars, ByKeys and vectors.
        key = (tuple(numeric), tuple(map(type, numeric.values())), tuple(categorical))
        if key in self._plans:
            return self._plans[key]
        plan: _Plan | None = None
        if not self._clash_possible(numeric, categorical):
            keyed = tuple(name for name, values in numeric.items() if isinstance(values, ByKey))
            vectors = tuple(
                name
                for name, values in numeric.items()
                if values.__class__ is not float and name not in keyed
            )
            used = [name for name in vectors if name in self._column]
            index = [self._column[name] for name in used]

            def terms_of(names: Iterable[str]) -> tuple[tuple[str, float, float], ...]:
                return tuple(
                    (name, self._mean_list[j], self._coef_list[j])
                    for name in names
                    if (j := self._column.get(name)) is not None
                )

            scalars = terms_of(name for name in numeric if name not in vectors + keyed)
            plan = _Plan(
                scalars,
                tuple(used),
                self._coefs[index],
                self._means[index, None],
                terms_of(used),
                terms_of(keyed),
            )
        if len(self._plans) >= _PLANS:  # callers that vary their names: keep it bounded
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _clash_possible(self, numeric: Mapping[str, Any], categorical: Mapping[str, Any]) -> bool:
        """Whether a row could have a one-hot key that another feature also produces."""
        if any(odd.name in numeric for odd in self._odd):
            return True
        prefixes = [f"{name}_" for name in categorical]
        names = [*numeric, *categorical]
        return any(other.startswith(prefix) for prefix in prefixes for other in names)


def _sums(
    by_key: dict[int, tuple[Sequence[Any], dict[Any, float]]], column: ByKey[Any, Any]
) -> dict[Any, float]:
    """The running sums per key of the rows keyed by `column.keys` (one per list of keys:
    the columns of one request share their candidates' categories)."""
    found = by_key.get(id(column.keys))
    if found is None:
        found = by_key[id(column.keys)] = (column.keys, dict.fromkeys(column.keys, 0.0))
    return found[1]


@functools.lru_cache(maxsize=8)
def _prefixes_of(keys: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """`_prefixes` of the weights' keys, and whether one of them extends another.

    A model's keys change only when it learns a new one-hot key, not at every version it
    publishes: worked out once per set of keys (in their order), not per version. A few
    sets are kept (the logistic variants of a replica's shards)."""
    prefixes = tuple(_prefixes(keys))
    # Two string features make the same key only if one name extends the other
    # ("a" = "b_c" and "a_b" = "c"); only then must a row remember the keys it used.
    nested = any(other.startswith(f"{name}_") for name in prefixes for other in prefixes)
    return prefixes, nested


def _prefixes(keys: Iterable[str]) -> dict[str, None]:
    """Every k such that some key starts with k + "_" (ordered, without duplicates)."""
    found: dict[str, None] = {}
    for key in keys:
        cut = key.find("_")
        while cut != -1:
            found[key[:cut]] = None
            cut = key.find("_", cut + 1)
    return found


def sigmoid(z: Floats) -> Floats:
    if not z.size or (z.min() >= -30.0 and z.max() <= 30.0):
        # Every logit within River's clamp (the usual case): no clamp to apply, and the
        # same ufuncs as below, in place.
        e: Floats = np.exp(-z)
        e += 1.0
        return np.divide(1.0, e, out=e)
    # np.clip's Python wrapper costs more than the two ufuncs it calls.
    p: Floats = 1.0 / (1.0 + np.exp(-np.minimum(np.maximum(z, -30.0), 30.0)))
    # River's utils.math.sigmoid returns exactly 0 and 1 beyond +-30 (NaN stays NaN).
    p[z < -30.0] = 0.0
    p[z > 30.0] = 1.0
    return p


def _sigmoid_one(z: float) -> float:
    """River's utils.math.sigmoid."""
    if z < -30.0:
        return 0.0
    if z > 30.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))


def _is_number(value: object) -> bool:
    return value.__class__ is float or isinstance(value, numbers.Number)


def _number_or(value: object, default: float) -> Any:
    return value if _is_number(value) else default


def _nothing(row: Row) -> tuple[()]:
    return ()
