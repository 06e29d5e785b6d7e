"""Model functions for the tests of `module:function` variants (learner/hooks.py).

`crossed_logreg` is the example of docs/learner.md; the others break each rule once.
"""

import numbers
from typing import Any

from river import compose, linear_model, optim, preprocessing


def user_category(x: dict[str, Any]) -> dict[str, Any]:
    """The features, and the pair (shopper, category) as one more categorical feature."""
    if isinstance(x.get("user_id"), str) and isinstance(x.get("category"), str):
        return {**x, "user_category": f"{x['user_id']}|{x['category']}"}
    return x


def crossed_logreg(lr: float = 0.05, l2: float = 0.0) -> Any:
    """A logistic regression that also learns a weight per shopper and category."""
    numeric = compose.SelectType(numbers.Number) | preprocessing.StandardScaler()
    categorical = compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True)
    return (
        compose.FuncTransformer(user_category)
        | (numeric + categorical)
        | linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
    )


def plain_logreg() -> Any:
    """A model function may also return a logistic pipeline the API scores with numpy."""
    numeric = compose.SelectType(numbers.Number) | preprocessing.StandardScaler()
    categorical = compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True)
    return (numeric + categorical) | linear_model.LogisticRegression(optimizer=optim.Adam(0.01))


def not_a_classifier() -> Any:
    return preprocessing.StandardScaler()


def fails(**params: Any) -> Any:
    raise RuntimeError("no model today")


def unpicklable() -> Any:
    return compose.FuncTransformer(lambda x: x) | linear_model.LogisticRegression()


NOT_CALLABLE = 3
