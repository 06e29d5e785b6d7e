"""Model kinds written `module:function`: an operator's own River classifier as a variant.

`HEADRACE_VARIANTS='{"x": "yarnshop.models:small_forest"}'` makes the learner import
`yarnshop.models` and call `small_forest()` (with the variant's parameters as keyword
arguments, when it has any) for a fresh, untrained model. Nothing else about such a
variant is special: it learns, is published, snapshotted and served like the built-in
kinds. The model is pickled, so whatever it is made of must be importable by name where
it is loaded again: the API replicas that serve it, standby learners, the snapshot tools.
"""

import importlib
import re
from collections.abc import Mapping
from typing import Any

from learner import modelcodec
from learner.errors import ModelError

_HOOK = re.compile(r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)")

# What the learner and the API call on every model (learner/variant.py, api/scoring.py).
_REQUIRED = ("learn_one", "predict_proba_one")


def is_hook(kind: str) -> bool:
    """Whether `kind` names a function (`module:function`) rather than a built-in kind."""
    return ":" in kind


def build_hooked(kind: str, params: Mapping[str, object] | None = None) -> Any:
    """The model `kind`'s function returns; ModelError when there is none to learn with."""
    found = _HOOK.fullmatch(kind)
    if found is None:
        raise ModelError(
            f"model kind {kind!r}: a model function is written module:function, "
            "e.g. yarnshop.models:small_forest"
        )
    module_name, name = found["module"], found["function"]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"{kind}: cannot import {module_name} ({exc}); install it where the learner "
            "and the API run"
        ) from exc
    # Importing runs the operator's code: any failure there is a configuration error.
    except Exception as exc:
        raise ModelError(f"{kind}: importing {module_name} failed: {_why(exc)}") from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise ModelError(f"{kind}: {module_name} has no function {name}")
    args = dict(params or {})
    try:
        model = function(**args)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ModelError(f"{kind}: {name}({shown}) failed: {_why(exc)}") from exc
    missing = [method for method in _REQUIRED if not callable(getattr(model, method, None))]
    if missing:
        raise ModelError(
            f"{kind} returned {type(model).__qualname__}, not a River classifier "
            f"(it has no {' or '.join(missing)})"
        )
    # The learner publishes the model every few hundred milliseconds: a model that does
    # not pickle (a lambda, a class defined inside the function) would fail there.
    try:
        modelcodec.dumps(model)
    except Exception as exc:
        raise ModelError(f"{kind} returned a model that cannot be pickled: {_why(exc)}") from exc
    return model


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
