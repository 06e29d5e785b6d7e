"""Features as columns: one value for every row (a scalar) or one value a row.

The API computes a request's features column by column (`learner.features.features_many`):
the user's and the context's once, the candidates' as lists, and what only a candidate's
category decides once per category (`ByKey`). `LinearScorer.score_columns` scores them as
they are; anything else reads them as rows with `rows_of`.
"""

import numbers
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

import numpy as np
import numpy.typing as npt

_FEW_ROWS = 4
"""Up to this many rows a list of floats stays a list (read value by value, numpy's cost
per call is more than the work)."""

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class ByKey(Sequence[_V], Generic[_K, _V]):
    """A column whose row i is `table[keys[i]]`: a feature that only the row's key decides
    (a candidate's category), worked out once per distinct key.

    It reads as the list of its rows (`rows()`, indexing, iteration, numpy), so whatever
    takes columns takes it; `LinearScorer.score_columns` adds such a feature's terms once
    per key instead of once per row. `table` must hold every key of `keys`.
    """

    __slots__ = ("_rows", "keys", "table")

    def __init__(self, keys: Sequence[_K], table: Mapping[_K, _V]) -> None:
        self.keys = keys
        self.table = table
        self._rows: list[_V] | None = None

    def rows(self) -> list[_V]:
        """The column as a list, one value a row."""
        if self._rows is None:
            table = self.table
            self._rows = [table[key] for key in self.keys]
        return self._rows

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> _V: ...
    @overload
    def __getitem__(self, index: slice) -> list[_V]: ...
    def __getitem__(self, index: int | slice) -> _V | list[_V]:
        return self.rows()[index]

    def __iter__(self) -> Iterator[_V]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ByKey | list):
            return self.rows() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like the list it reads as

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        return np.array(self.rows(), dtype=dtype)

    def __repr__(self) -> str:
        return f"ByKey({self.rows()!r})"


Column = float | str | None | Sequence[Any] | npt.NDArray[Any]
"""A scalar (every row's value) or one value a row; None (or a None item): no such feature.
A `ByKey` is a sequence: one value a row, through its key."""


def rows_of(columns: Mapping[str, Column], n: int) -> list[dict[str, Any]]:
    """The rows that `columns` describe (see `LinearScorer.score_columns`)."""
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, column in columns.items():
        value = column.rows() if isinstance(column, ByKey) else _unwrap(column)
        if value is None:
            continue
        if isinstance(value, str | numbers.Number):
            for row in rows:
                row[name] = value
            continue
        values: Sequence[Any] = value.tolist() if isinstance(value, np.ndarray) else value
        _check_length(name, len(values), n)
        for row, value in zip(rows, values, strict=True):
            if value is not None:
                row[name] = value
    return rows


def _unwrap(column: Column) -> Any:
    """A 0-d array is the scalar it holds."""
    if isinstance(column, np.ndarray) and column.ndim == 0:
        return column.item()
    return column


def _check_length(name: str, length: int, n: int) -> None:
    if length != n:
        raise ValueError(f"column {name!r} has {length} values for {n} rows")


def classify(name: str, column: Column, n: int, keyed: bool = False) -> tuple[str, Any]:
    """("numeric" | "categorical", values), ("absent", None) or ("mixed", None).

    With `keyed` a `ByKey` column of all floats or all strs is given back as it is (its
    values are its table's); otherwise, or of other values, it is read as its rows."""
    # The API's columns (learner.features.features_many) are floats, strs and lists of
    # either: told apart by exact type first, a list in one pass, without a round trip
    # through a numpy string array.
    kind = column.__class__
    if kind is ByKey:
        keyed_column: ByKey[Any, Any] = column  # type: ignore[assignment]
        _check_length(name, len(keyed_column), n)
        if keyed and n:
            types = set(map(type, keyed_column.table.values()))
            if types == {float}:
                return "numeric", keyed_column
            if types == {str}:
                return "categorical", keyed_column
        column = keyed_column.rows()
        kind = list
    if kind is float:
        return "numeric", column
    if kind is str:
        return "categorical", column
    if kind is list and column:
        if n > _FEW_ROWS and column[0].__class__ is float:  # type: ignore[index]
            # numpy tells the types apart while it builds the array the scorer stacks
            # anyway (one pass over the list, not two); what it makes float64 is numeric
            # below as well, anything else goes the way below.
            array = np.asarray(column)
            if array.dtype == np.float64 and array.ndim == 1:
                _check_length(name, len(array), n)
                return "numeric", array
        types = set(map(type, column))  # type: ignore[arg-type]
        if types == {str}:
            _check_length(name, len(column), n)  # type: ignore[arg-type]
            return "categorical", column
        if types == {float}:
            _check_length(name, len(column), n)  # type: ignore[arg-type]
            return "numeric", column  # made an array with the other columns
    value: Any = _unwrap(column)
    if value is None:
        return "absent", None
    if isinstance(value, str):
        return "categorical", value
    if isinstance(value, numbers.Real):
        return "numeric", float(value)
    if isinstance(value, numbers.Number):
        return "mixed", None
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"a column must be a scalar or one-dimensional, not {array.shape}")
    _check_length(name, len(array), n)
    if array.dtype.kind in "fiub":
        return "numeric", array.astype(np.float64, copy=False)
    # numpy turns ["a", 1.5] into unicode too: only all-str sequences are categorical.
    if array.dtype.kind == "U" and (
        isinstance(value, np.ndarray) or all(v.__class__ is str for v in value)
    ):
        return "categorical", array.tolist()
    return "mixed", None
