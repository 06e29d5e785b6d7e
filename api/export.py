"""The logistic model as versioned JSON, for scoring outside the API (api/static/scorer.js).

What River's logistic pipeline (`learner.models`, kind "logreg") needs to compute a
probability from the raw `features()` dict: the scaler's running means and variances,
the weights of the numeric features, the one-hot weights (the vocabulary: every
"name_value" key the model holds a weight for), the intercept, and the shard's
`feature_config` and the store-wide table the features read (`store_stats`,
learner/storestats.py). Only the logistic pipeline exports: other kinds have no such closed form
here (NotExportableError: the route answers 409).

The document is public the moment it is served: whoever can fetch it has the weights.
"""

import dataclasses
import math
from typing import Any

from api.errors import NotExportableError
from api.loading import LoadedVariant, ShardModel
from learner.models import logreg_parts

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning; scorer.js refuses a version it does not know."""

FORMAT = "headrace.logreg"


def export(shard: ShardModel, variant: LoadedVariant) -> dict[str, Any]:
    """`variant` of `shard` (as loaded: one published state) as a JSON-ready document."""
    parts = logreg_parts(variant.model)
    if parts is None:
        raise NotExportableError(
            f"variant {variant.name!r} of shard {shard.shard} is a {variant.kind!r} model; "
            "only the logistic pipeline (kind logreg) exports"
        )
    scaler, logreg = parts
    weights = logreg._weights.to_dict()
    if not all(isinstance(key, str) for key in weights):
        raise NotExportableError(f"variant {variant.name!r}: its weights are not keyed by name")
    means, variances = dict(scaler.means), dict(scaler.vars)
    numbers = [logreg.intercept, *weights.values(), *means.values(), *variances.values()]
    if not all(math.isfinite(v) for v in numbers):
        raise NotExportableError(
            f"variant {variant.name!r} holds non-finite numbers (a broken model)"
        )
    numeric = {name: float(weights[name]) for name in means if name in weights}
    one_hot = {key: float(w) for key, w in weights.items() if key not in means}
    return {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "model": shard.shard,
        "variant": variant.name,
        "kind": variant.kind,
        "epoch": shard.epoch,
        "version": shard.version,
        "published_at": shard.published_at,
        "feature_config": dataclasses.asdict(shard.feature_config),
        "store_stats": shard.store.dump() if shard.store is not None else None,
        "intercept": float(logreg.intercept),
        "scaler": {
            "means": {name: float(v) for name, v in means.items()},
            "vars": {name: float(v) for name, v in variances.items()},
        },
        "weights": numeric,
        "one_hot": one_hot,
    }
