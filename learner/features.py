"""The one feature pipeline: what the learner learns from is what the API scores.

An impression (learner) and a candidate of a prediction request (API) both
become `Context` + `Item` + the user's and the item's online aggregates as
they are at that moment, and go through `features()`. The aggregates are
decayed counts kept in Redis hashes (field → float); `observe_*` update them
after the features of the current event were taken (point in time).
"""

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Protocol

Features = dict[str, float | str]
Aggregates = MutableMapping[str, float]

# Smoothing priors: a new user or item starts at the store-wide typical rates
# instead of 0/0, and needs a few events before its own rate dominates.
_CTR_PRIOR = 0.1
_CVR_PRIOR = 0.03
_PRIOR_WEIGHT = 5.0

_TIME = "t"
_IMPRESSIONS = "imp"
_CLICKS = "clk"
_PURCHASES = "pur"
_PRICE_SUM = "psum"
_PRICE_N = "pn"
_CATEGORY_TOTAL = "cat"
_CATEGORY = "cat:"


class ContextLike(Protocol):
    """Where an item is shown: an impression's context or a prediction request's."""

    @property
    def query(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def page(self) -> str: ...
    @property
    def position(self) -> int: ...


class ItemLike(Protocol):
    """What is shown: an impression's item or a request's candidate."""

    @property
    def price(self) -> float: ...
    @property
    def category(self) -> str: ...
    @property
    def brand(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Parameters of the pipeline; published with the model so the API uses the same."""

    half_life_s: float = 86_400.0


def _decay(aggs: Mapping[str, float], at: float, config: FeatureConfig) -> float:
    """Factor that brings counts stored at aggs['t'] to event time `at`.

    Events of different partitions interleave slightly out of time order; an
    older event does not inflate the counts (factor capped at 1).
    """
    last = aggs.get(_TIME)
    if last is None or at <= last:
        return 1.0
    return float(0.5 ** ((at - last) / config.half_life_s))


def _rate(hits: float, trials: float, prior: float) -> float:
    return (hits + prior * _PRIOR_WEIGHT) / (trials + _PRIOR_WEIGHT)


def features(
    context: ContextLike,
    item: ItemLike,
    user: Mapping[str, float],
    item_aggs: Mapping[str, float],
    at: float,
    config: FeatureConfig,
) -> Features:
    """The model's input for showing `item` to a user in `context` at time `at` (epoch s)."""
    u = _decay(user, at, config)
    i = _decay(item_aggs, at, config)
    u_imp = user.get(_IMPRESSIONS, 0.0) * u
    u_clk = user.get(_CLICKS, 0.0) * u
    u_pur = user.get(_PURCHASES, 0.0) * u
    i_imp = item_aggs.get(_IMPRESSIONS, 0.0) * i
    i_clk = item_aggs.get(_CLICKS, 0.0) * i
    i_pur = item_aggs.get(_PURCHASES, 0.0) * i
    log_price = math.log1p(item.price)
    price_n = user.get(_PRICE_N, 0.0)
    price_gap = log_price - user.get(_PRICE_SUM, 0.0) / price_n if price_n > 0 else 0.0
    cat_total = user.get(_CATEGORY_TOTAL, 0.0)
    cat_share = user.get(_CATEGORY + item.category, 0.0) / cat_total if cat_total > 0 else 0.0
    query = context.query.lower()
    matches = item.category.lower() in query or (
        item.brand is not None and item.brand.lower() in query
    )
    return {
        "price": item.price,
        "log_price": log_price,
        "position": float(context.position),
        "query_match": 1.0 if matches else 0.0,
        "u_imp": math.log1p(u_imp),
        "u_ctr": _rate(u_clk, u_imp, _CTR_PRIOR),
        "u_cvr": _rate(u_pur, u_imp, _CVR_PRIOR),
        "u_price_gap": price_gap,
        "u_cat_share": cat_share,
        "i_imp": math.log1p(i_imp),
        "i_ctr": _rate(i_clk, i_imp, _CTR_PRIOR),
        "i_cvr": _rate(i_pur, i_imp, _CVR_PRIOR),
        "category": item.category,
        "brand": item.brand or "none",
        "device": context.device,
        "page": context.page,
    }


def _advance(aggs: Aggregates, at: float, config: FeatureConfig, fields: tuple[str, ...]) -> None:
    factor = _decay(aggs, at, config)
    if factor != 1.0:
        for name in fields:
            if name in aggs:
                aggs[name] *= factor
    aggs[_TIME] = max(at, aggs.get(_TIME, at))


_COUNTS = (_IMPRESSIONS, _CLICKS, _PURCHASES)


def observe_impression(
    user: Aggregates, item_aggs: Aggregates, at: float, config: FeatureConfig
) -> None:
    """Count an impression, after its features were taken."""
    _advance(user, at, config, _COUNTS)
    _advance(item_aggs, at, config, _COUNTS)
    user[_IMPRESSIONS] = user.get(_IMPRESSIONS, 0.0) + 1.0
    item_aggs[_IMPRESSIONS] = item_aggs.get(_IMPRESSIONS, 0.0) + 1.0


def observe_outcome(
    user: Aggregates,
    item_aggs: Aggregates,
    kind: str,
    item: ItemLike | None,
    at: float,
    config: FeatureConfig,
) -> None:
    """Count a click or purchase; with the item known, also the user's price level and tastes.

    Price level and category affinity are long-run tastes and are not decayed.
    """
    field = {"click": _CLICKS, "purchase": _PURCHASES}.get(kind)
    if field is None:
        return
    _advance(user, at, config, _COUNTS)
    _advance(item_aggs, at, config, _COUNTS)
    user[field] = user.get(field, 0.0) + 1.0
    item_aggs[field] = item_aggs.get(field, 0.0) + 1.0
    if item is not None:
        user[_PRICE_SUM] = user.get(_PRICE_SUM, 0.0) + math.log1p(item.price)
        user[_PRICE_N] = user.get(_PRICE_N, 0.0) + 1.0
        user[_CATEGORY_TOTAL] = user.get(_CATEGORY_TOTAL, 0.0) + 1.0
        key = _CATEGORY + item.category
        user[key] = user.get(key, 0.0) + 1.0
