"""Model functions tried as the cascade's second stage (bench/serve_cascade.py --then).

    --then fm,tree,bench.cascade_models:crossed_logreg

`features()` carries no shopper or item id, so a second stage can only cross what it
gives. Within one request the shopper is fixed, and the hidden model ranks candidates by
the shopper's taste for the category, their price sensitivity times the item's price
relative to its category, and the query match. The logistic model sees estimates of the
taste (the `u_cat_*` aggregates) with one weight for every shopper, whether a handful of
impressions or hundreds back them: crossed with the shopper's history (`u_imp`), the
weights can grow with it. The shipped features no longer carry `u_imp` (a count that grows
with the stream's age, docs/learner.md); the crosses need the feature, and without it the
model adds the squares only.
"""

from typing import Any

from river import compose, linear_model, preprocessing

from learner.models import AdaGrad, SelectNumbers, SelectStrings

_BY_HISTORY = (
    "u_cat_share",
    "u_cat_click",
    "u_cat_ctr",
    "u_cat_cart",
    "u_cat_cvr",
    "u_price_gap",
    "log_price",
    "query_match",
)
"""The features whose weight may depend on how much history the shopper has."""


def with_crosses(x: dict[str, Any]) -> dict[str, Any]:
    """The features, each of _BY_HISTORY times `u_imp`, and the taste shares squared."""
    history = x.get("u_imp")
    out = dict(x)
    if isinstance(history, float | int):
        for name in _BY_HISTORY:
            value = x.get(name)
            if isinstance(value, float | int):
                out[f"{name}*u_imp"] = value * history
    for name in ("u_cat_share", "u_cat_click"):
        value = x.get(name)
        if isinstance(value, float | int):
            out[f"{name}^2"] = value * value
    return out


def crossed_logreg(lr: float = 0.05) -> Any:
    """The logistic model of `logreg` over the features and their crosses (`with_crosses`)."""
    scaled = SelectNumbers() | preprocessing.StandardScaler()
    one_hot = SelectStrings() | preprocessing.OneHotEncoder(drop_zeros=True)
    model = linear_model.LogisticRegression(optimizer=AdaGrad(lr), intercept_lr=0.01)
    return compose.Pipeline(compose.FuncTransformer(with_crosses), scaled + one_hot, model)
