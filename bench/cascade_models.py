"""Model functions tried as the cascade's second stage (bench/serve_cascade.py --then).

    --then fm,tree,bench.cascade_models:crossed_logreg

`features()` carries no shopper or item id, so a second stage can only cross what it
gives. Within one request the shopper is fixed, and the hidden model ranks candidates by
the shopper's taste for the category, their price sensitivity times the item's price
relative to its category, and the query match. The logistic model sees estimates of the
taste (the `u_cat_*` aggregates) but cannot weigh them by how much history backs them
(`u_imp`), nor let them bend: the pairwise products of the numbers can.
"""

from typing import Any

from river import compose, feature_extraction, linear_model, preprocessing

from learner.models import AdaGrad, SelectNumbers, SelectStrings


def crossed_logreg(lr: float = 0.05) -> Any:
    """The logistic model of `logreg` plus every product of two standardised numbers."""
    crossed = (
        SelectNumbers()
        | preprocessing.StandardScaler()
        | feature_extraction.PolynomialExtender(degree=2, include_bias=False)
    )
    one_hot = SelectStrings() | preprocessing.OneHotEncoder(drop_zeros=True)
    model = linear_model.LogisticRegression(optimizer=AdaGrad(lr), intercept_lr=0.01)
    return compose.Pipeline(crossed + one_hot, model)
