"""Compact, exact serialization of River models (and anything that holds them).

Every River probability distribution (`river.proba.Gaussian` and its siblings) owns a
`random.Random`, seeded from os.urandom when no seed is given. A Hoeffding tree keeps two
Gaussians per numeric feature in every leaf (`tree.splitter.GaussianSplitter`, one per
class), and each generator pickles to ~3.8 kB: about 96% of a tree's bytes. The generator
is read only by `sample()`, which no model calls while learning or predicting, and an
unseeded generator's state is unpredictable by design. So such a generator is not saved:
on load the object gets a new unseeded one. A seeded generator (reproducible `sample()`)
is saved as it is. Everything else is plain pickle, so a loaded model predicts and learns
exactly like the one that was dumped.

Blob layout: 4 bytes of magic and format version, 1 byte of compression, the pickle.
`loads` runs pickle: only call it on bytes whose origin was verified (signed snapshots,
our own Redis state).
"""

import contextlib
import copyreg
import gc
import io
import pickle
import random
import sys
import zlib
from collections.abc import Iterator
from typing import Any

import river.proba  # noqa: F401  (imports every Distribution subclass before we list them)
from river.proba.base import Distribution

from learner.errors import StateError

MAGIC = b"HRM1"
_RAW = b"\x00"
_ZLIB = b"\x01"
_HEADER = len(MAGIC) + 1

# Below this size compression costs more time than the bytes it saves (a 4 kB logistic
# model: zlib takes ~26 us to save ~1.3 kB, less than what 1.3 kB cost to send or store).
# A tree's pickle is mostly float64 opcodes and compresses ~3x.
COMPRESS_MIN_BYTES = 32 * 1024
# Keep the compressed form only when it saves at least this fraction.
COMPRESS_MIN_SAVING = 0.10
ZLIB_LEVEL = 1

_PROTOCOL = pickle.HIGHEST_PROTOCOL
# pickle turns a reduction through copyreg.__newobj__ into its compact NEWOBJ opcode.
_NEWOBJ: Any = copyreg.__newobj__  # type: ignore[attr-defined]
# New generators for loaded distributions draw their seeds from one generator seeded by
# the OS: Random(int) is half the cost of Random() (which reads os.urandom each time).
_SEEDS = random.Random()


def dumps(obj: Any, *, compress: bool | None = None) -> bytes:
    """Serialize `obj`; `compress=None` compresses when it pays (see COMPRESS_MIN_BYTES)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=_PROTOCOL)
    # Copied per call so reducers registered with copyreg later are honoured too.
    pickler.dispatch_table = {**copyreg.dispatch_table, **_STRIP_RNG}
    pickler.dump(obj)
    raw = buffer.getvalue()
    if compress is False or (compress is None and len(raw) < COMPRESS_MIN_BYTES):
        return MAGIC + _RAW + raw
    packed = zlib.compress(raw, ZLIB_LEVEL)
    if compress is None and len(packed) > len(raw) * (1.0 - COMPRESS_MIN_SAVING):
        return MAGIC + _RAW + raw
    return MAGIC + _ZLIB + packed


def loads(blob: bytes) -> Any:
    """The object `dumps` encoded in `blob`; StateError when the bytes are not such a blob."""
    if len(blob) < _HEADER or blob[: len(MAGIC)] != MAGIC:
        raise StateError("not a model blob (bad magic; foreign or truncated bytes)")
    kind = blob[len(MAGIC) : _HEADER]
    body = memoryview(blob)[_HEADER:]
    if kind == _ZLIB:
        try:
            raw: bytes | memoryview = zlib.decompress(body)
        except zlib.error as exc:
            raise StateError(f"model blob does not decompress: {exc}") from exc
    elif kind == _RAW:
        raw = body
    else:
        raise StateError(f"model blob has unknown compression {kind!r}")
    try:
        with _gc_paused():
            return pickle.loads(raw)
    # Truncated or foreign pickles fail in many ways (EOFError, UnpicklingError,
    # AttributeError, ImportError, ...): all of them mean "this is not our state".
    except Exception as exc:
        raise StateError(f"model blob does not unpickle: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while unpickling a model.

    Unpickling a tree allocates tens of thousands of containers, which triggers full
    collections that walk the whole heap: in a process holding 100k events, loading a
    100 kB tree took 50 ms instead of 14 ms. Nothing unpickled is garbage yet.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _reduce_distribution(obj: Any) -> Any:
    state = obj.__dict__
    if state.get("seed") is not None or "_rng" not in state:
        return obj.__reduce_ex__(_PROTOCOL)
    stripped = dict(state)
    # None keeps the key's place: the loaded __dict__ is then built in the same order, so
    # it shares keys with its class like the original (and has the same in-memory size).
    stripped["_rng"] = None
    return _NEWOBJ, (type(obj),), stripped, None, None, _set_state_new_rng


def _set_state_new_rng(obj: Any, state: dict[str, Any]) -> None:
    state["_rng"] = random.Random(_SEEDS.getrandbits(64))
    attributes = obj.__dict__
    # The same loop pickle's own BUILD runs, so the result is indistinguishable from it.
    for name, value in state.items():
        attributes[sys.intern(name)] = value


def _pickles_by_dict(cls: type) -> bool:
    """Whether pickle's default (the instance __dict__, nothing else) applies to `cls`."""
    custom = ("__reduce_ex__", "__reduce__", "__getstate__", "__setstate__", "__getnewargs_ex__")
    ancestors = [c for c in cls.__mro__ if c is not object]
    overrides = any(name in c.__dict__ for c in ancestors for name in custom)
    slots = [s for c in ancestors for s in c.__dict__.get("__slots__", ())]
    return not overrides and not slots and not getattr(cls, "__abstractmethods__", None)


def _distribution_classes() -> list[type]:
    found: list[type] = []
    pending: list[type] = [Distribution]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if _pickles_by_dict(cls):
            found.append(cls)
    return found


# A dispatch table rather than Pickler.reducer_override: pickle looks the exact type up in
# C, so only distributions pay for a Python call (reducer_override runs for every object).
# Subclasses of Distribution defined after this import are pickled whole: correct, bigger.
_STRIP_RNG: dict[type, Any] = dict.fromkeys(_distribution_classes(), _reduce_distribution)
