"""River pipelines by name: `build_model("logreg", {"lr": 0.05})`, or an operator's own
model function: `build_model("yarnshop.models:crossed_logreg")` (learner/hooks.py).

Feature dicts map dynamic names to floats (numeric) or strings (categorical),
so every pipeline splits the features by value type, never by name (but for the
shopper's and the item's ids, which the tree drops).
"""

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from river import compose, linear_model, optim, preprocessing

from learner.bayes import BayesianLogisticRegression
from learner.calibrated import PositionCalibrated
from learner.errors import ModelError
from learner.factorization import FMClassifier
from learner.forest import ARFClassifier
from learner.hooks import build_hooked, is_hook

# The shopper's and the item's ids (`features()`). A tree cannot use them (a split on one
# shopper out of millions teaches nothing) and each of its active leaves would keep a count
# per id and class: a state that grows with the number of shoppers. The tree drops them.
ID_FEATURES = ("user_id", "item_id")

# Numeric features keep their names; categorical ones get this suffix in the tree, so a
# feature that is a number in one event and a string in another becomes two features
# instead of crashing the tree's numeric splitter (it compares the string to floats).
TREE_CATEGORICAL_SUFFIX = ":str"


class SelectNumbers(compose.SelectType):
    """River's SelectType(numbers.Number), without an ABC check for every float.

    isinstance against numbers.Number was the largest single cost of learning;
    floats and strings, nearly every value, are decided by their class alone.
    """

    def __init__(self) -> None:
        super().__init__(numbers.Number)

    def transform_one(self, x: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v
            for k, v in x.items()
            if v.__class__ is float or (v.__class__ is not str and isinstance(v, numbers.Number))
        }


class SelectStrings(compose.SelectType):
    """River's SelectType(str), decided by class first (see SelectNumbers)."""

    def __init__(self) -> None:
        super().__init__(str)

    def transform_one(self, x: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v
            for k, v in x.items()
            if v.__class__ is str or (v.__class__ is not float and isinstance(v, str))
        }


class AdaGrad(optim.AdaGrad):
    """River's AdaGrad, with the learning rate read once a step instead of once a weight.

    River looks its scheduler up through a property for every weight of every step: a
    third of the logistic model's learning time here. The rate cannot change within a
    step (it depends only on the step count), so every weight moves exactly as River's.
    """

    def _step_with_dict(self, w: Any, g: Any) -> Any:
        lr, g2, eps = self.learning_rate, self.g2, self.eps
        for i, gi in g.items():
            g2[i] += gi**2
            w[i] -= lr / (g2[i] + eps) ** 0.5 * gi
        return w


@dataclass(frozen=True)
class _Param:
    default: float | int | str
    minimum: float | None = None
    choices: tuple[str, ...] = ()


def _build_logreg(p: Mapping[str, Any]) -> Any:
    optimizers: dict[str, Callable[[float], Any]] = {
        "sgd": optim.SGD,
        "adagrad": AdaGrad,
        "adam": optim.Adam,
    }
    if p["l1"] and p["l2"]:
        raise ModelError("logreg: River cannot combine l1 and l2; set one of them to 0")
    scaled = SelectNumbers() | preprocessing.StandardScaler()
    # drop_zeros: the encoder then keeps no per-value state and emits only the active
    # "name_value" keys. Without it every prediction copies a dict of every value ever
    # seen (slower, and the state grows with cardinality); the logit is the same.
    one_hot = SelectStrings() | preprocessing.OneHotEncoder(drop_zeros=True)
    model: linear_model.LogisticRegression
    if p["optimizer"] == "bayes":
        if p["l1"] or p["l2"]:
            raise ModelError(
                "logreg: the bayes optimizer's regularisation is its prior; set prior_var "
                "and one_hot_var instead of l1 or l2"
            )
        model = BayesianLogisticRegression(p["prior_var"], p["one_hot_var"], p["drift_var"])
    else:
        model = linear_model.LogisticRegression(
            optimizer=optimizers[p["optimizer"]](p["lr"]),
            l2=p["l2"],
            l1=p["l1"],
            intercept_lr=p["intercept_lr"],
        )
    # Named as River names its own, so `model["LogisticRegression"]` finds either.
    return compose.Pipeline(scaled + one_hot, ("LogisticRegression", model))


def _build_tree(p: Mapping[str, Any]) -> Any:
    typed = SelectNumbers() + (SelectStrings() | compose.Suffixer(TREE_CATEGORICAL_SUFFIX))
    # A small adaptive random forest of Hoeffding trees rather than one tree: on the
    # simulator's stream its held-out AUC beat the single tree's (docs/learner.md, "Model
    # kinds"), it ranks from its first few hundred examples, and each member is replaced
    # when a drift detector says it has gone stale. Seeded, and deterministic with it
    # (learner/forest.py), so a replay or a restore grows the same trees.
    model = ARFClassifier(
        n_models=p["n_models"],
        grace_period=p["grace_period"],
        max_depth=p["max_depth"],
        delta=p["delta"],
        # A leaf's own share of purchases. "nba" picks per leaf whichever of that and naive
        # Bayes was more often right, and at 5% positives the majority class always is:
        # the same predictions, for the cost of keeping naive Bayes up to date. Naive
        # Bayes leaves ("nb") rank worse and their probabilities are far off.
        leaf_prediction="mc",
        # The caps that keep the published state small are structural and deterministic:
        # binary splits (a 50-value category would otherwise split 50 ways, and every unseen
        # value adds a branch) and max_depth (at most 2**max_depth leaves a tree; leaves at
        # the depth limit stop learning and drop their splitters). A forest holds at most
        # 2 * n_models trees: each member and, while its warning detector is on, the
        # background tree that may replace it.
        binary_split=True,
        # River's memory check (per tree) is only a backstop for unbounded feature sets. It
        # measures in-memory object sizes, which a pickle round trip does not preserve
        # (shared floats are duplicated, dicts and lists are resized), so when it bites a
        # restored tree may deactivate other leaves than the tree that never stopped.
        max_size=p["max_size_mib"],
        memory_estimate_period=p["memory_estimate_period"],
        seed=p["seed"],
    )
    # Its leaves predict the page's average at every position of it, too low at the top,
    # and it drops the fake negatives' weights: a layer over its log-odds learns both back.
    return compose.Pipeline(compose.Discard(*ID_FEATURES), typed, PositionCalibrated(model))


def _build_fm(p: Mapping[str, Any]) -> Any:
    scaled = SelectNumbers() | preprocessing.StandardScaler()
    strings: Any = SelectStrings()
    if p["buckets"]:
        # One latent vector per distinct value would grow the published state with every
        # new shopper and item; hashed into buckets it stops at `buckets` vectors. River's
        # hasher is seeded, so the learner and every restart hash alike.
        strings |= preprocessing.FeatureHasher(
            n_features=p["buckets"], seed=0, alternate_sign=False
        )
    model = FMClassifier(
        n_factors=p["n_factors"],
        weight_optimizer=optim.SGD(p["lr"]),
        latent_optimizer=optim.SGD(p["latent_lr"]),
        l2_weight=p["l2"],
        l2_latent=p["l2_latent"],
        intercept_lr=p["intercept_lr"],
        # Seeded: a learner that replays the stream from the start draws the same latents.
        latent_initializer=optim.initializers.Normal(sigma=p["init_std"], seed=p["seed"]),
        seed=p["seed"],
    )
    return compose.Pipeline(scaled + strings, model)


@dataclass(frozen=True)
class _Kind:
    build: Callable[[Mapping[str, Any]], Any]
    params: Mapping[str, _Param]


_KINDS: dict[str, _Kind] = {
    "logreg": _Kind(
        _build_logreg,
        {
            "lr": _Param(0.05, minimum=0.0),
            "l2": _Param(0.0, minimum=0.0),
            "l1": _Param(0.0, minimum=0.0),
            # River moves the intercept by plain SGD at a constant step, so it never settles:
            # it random-walks around its target with a spread of sqrt(step * var(gradient) /
            # (2 * curvature)), about sqrt(step / 2) for the logistic loss: 0.07 in logit (7 %
            # of every prediction) at 0.01, 0.02 at 0.001. The one-hot features that are
            # always on (device, page) carry the base rate on AdaGrad's shrinking steps
            # instead (docs/learner.md, "Learning quality").
            "intercept_lr": _Param(0.001, minimum=0.0),
            # "bayes" learns by Laplace steps under a Gaussian belief (learner/bayes.py):
            # no step size, and rare one-hot weights stay near 0 until the data says
            # otherwise (docs/learner.md, "Learning quality"). lr, intercept_lr, l1 and l2
            # are the other optimizers'.
            "optimizer": _Param("bayes", choices=("bayes", "sgd", "adagrad", "adam")),
            "prior_var": _Param(1.0, minimum=0.0),
            "one_hot_var": _Param(0.01, minimum=0.0),
            "drift_var": _Param(1e-8, minimum=0.0),
        },
    ),
    "tree": _Kind(
        _build_tree,
        {
            "n_models": _Param(3, minimum=1),
            "grace_period": _Param(50, minimum=1),
            "max_depth": _Param(8, minimum=1),
            "delta": _Param(0.01, minimum=0.0),
            "max_size_mib": _Param(64.0, minimum=1.0),
            "memory_estimate_period": _Param(100_000, minimum=1),
            "seed": _Param(0, minimum=0),
        },
    ),
    "fm": _Kind(
        _build_fm,
        {
            "n_factors": _Param(4, minimum=1),
            "lr": _Param(0.005, minimum=0.0),
            "latent_lr": _Param(0.005, minimum=0.0),
            "intercept_lr": _Param(0.01, minimum=0.0),
            "l2": _Param(0.0, minimum=0.0),
            "l2_latent": _Param(0.001, minimum=0.0),
            "init_std": _Param(0.05, minimum=0.0),
            "buckets": _Param(1 << 15, minimum=0),
            "seed": _Param(0, minimum=0),
        },
    ),
}

MODEL_KINDS: tuple[str, ...] = tuple(_KINDS)


def model_params(kind: str) -> dict[str, float | int | str]:
    """The parameters `kind` accepts, with their defaults (a model function's: none known)."""
    if is_hook(kind):
        return {}
    return {name: spec.default for name, spec in _kind(kind).params.items()}


def build_model(kind: str, params: Mapping[str, object] | None = None) -> Any:
    """A fresh, untrained River model of `kind`, with `params` over the defaults.

    `kind` is a built-in kind (MODEL_KINDS) or a model function, `module:function`
    (learner/hooks.py), which gets `params` as its keyword arguments.
    """
    if is_hook(kind):
        return build_hooked(kind, params)
    spec = _kind(kind)
    given = dict(params or {})
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        raise ModelError(
            f"{kind}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(spec.params))}"
        )
    resolved = {
        name: _check(kind, name, p, given.get(name, p.default)) for name, p in spec.params.items()
    }
    return spec.build(resolved)


def check_variants(variants: Mapping[str, str]) -> None:
    """Build every variant's model once, so that a bad kind stops a learner as it starts
    (a standby would otherwise find out only when it takes over)."""
    for name, kind in variants.items():
        try:
            build_model(kind)
        except ModelError as exc:
            raise ModelError(f"variant {name!r}: {exc}") from exc


def _kind(kind: str) -> _Kind:
    try:
        return _KINDS[kind]
    except KeyError:
        raise ModelError(
            f"unknown model kind {kind!r}; known kinds: {', '.join(MODEL_KINDS)}, "
            "or a model function written module:function"
        ) from None


def _check(kind: str, name: str, spec: _Param, value: object) -> float | int | str:
    where = f"{kind}.{name}"
    if spec.choices:
        if value not in spec.choices:
            raise ModelError(f"{where} must be one of {', '.join(spec.choices)}, not {value!r}")
        return str(value)
    # bool is an int to Python; a flag where a number belongs is a configuration mistake.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(f"{where} must be a number, not {value!r}")
    if isinstance(spec.default, int) and not isinstance(value, int):
        if not float(value).is_integer():
            raise ModelError(f"{where} must be a whole number, not {value!r}")
        value = int(value)
    if not math.isfinite(value) or (spec.minimum is not None and value < spec.minimum):
        raise ModelError(f"{where} must be a finite number >= {spec.minimum}, not {value!r}")
    return value if isinstance(spec.default, int) else float(value)


def logreg_parts(model: Any) -> tuple[Any, Any] | None:
    """(StandardScaler, LogisticRegression) when `model` is the pipeline "logreg" builds.

    What `learner.linear.LinearScorer` reads to score it with numpy.
    """
    if not isinstance(model, compose.Pipeline) or len(model.steps) != 2:
        return None
    union, logreg = model.steps.values()
    if not isinstance(union, compose.TransformerUnion) or not _plain_logreg(logreg):
        return None
    branches = list(union.transformers.values())
    if len(branches) != 2 or not all(isinstance(b, compose.Pipeline) for b in branches):
        return None
    numeric, categorical = (list(b.steps.values()) for b in branches)
    if len(numeric) != 2 or len(categorical) != 2:
        return None
    select_numbers, scaler = numeric
    select_strings, encoder = categorical
    ok = (
        _selects(select_numbers, numbers.Number)
        and type(scaler) is preprocessing.StandardScaler
        and scaler.with_std
        and scaler.window_size is None
        and _selects(select_strings, str)
        and type(encoder) is preprocessing.OneHotEncoder
        and encoder.categories is None
        and not encoder.drop_first
    )
    return (scaler, logreg) if ok else None


def fm_parts(model: Any) -> tuple[Any, Any | None, FMClassifier] | None:
    """(StandardScaler, FeatureHasher or None, FMClassifier) when `model` is the pipeline
    "fm" builds (with or without its hasher).

    What `learner.fmscorer.FMScorer` reads to score it with numpy.
    """
    if not isinstance(model, compose.Pipeline) or len(model.steps) != 2:
        return None
    union, fm = model.steps.values()
    plain_fm = type(fm) is FMClassifier and not fm.sample_normalization
    if not isinstance(union, compose.TransformerUnion) or not plain_fm:
        return None
    branches = list(union.transformers.values())
    if len(branches) != 2 or not isinstance(branches[0], compose.Pipeline):
        return None
    numeric = list(branches[0].steps.values())
    strings = (
        list(branches[1].steps.values())
        if isinstance(branches[1], compose.Pipeline)
        else [branches[1]]
    )
    if len(numeric) != 2 or not 1 <= len(strings) <= 2:
        return None
    select_numbers, scaler = numeric
    hasher = strings[1] if len(strings) == 2 else None
    ok = (
        _selects(select_numbers, numbers.Number)
        and type(scaler) is preprocessing.StandardScaler
        and scaler.with_std
        and scaler.window_size is None
        and _selects(strings[0], str)
        and (hasher is None or type(hasher) is preprocessing.FeatureHasher)
    )
    return (scaler, hasher, fm) if ok else None


def _plain_logreg(logreg: Any) -> bool:
    loss = getattr(logreg, "loss", None)
    return (
        type(logreg) in (linear_model.LogisticRegression, BayesianLogisticRegression)
        and isinstance(loss, optim.losses.BinaryLoss)
        # The probability is sigmoid(dot) only with BinaryLoss's own mean function.
        and type(loss).mean_func is optim.losses.BinaryLoss.mean_func
    )


def _selects(step: Any, kind: type) -> bool:
    # learner.models' SelectNumbers/SelectStrings subclass it with the same semantics.
    return isinstance(step, compose.SelectType) and tuple(step.types) == (kind,)
