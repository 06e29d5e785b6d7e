"""The one feature pipeline: what the learner learns from is what the API scores.

An impression (learner) and a candidate of a prediction request (API) both
become `Context` + `Item` + the user's and the item's online aggregates as
they are at that moment, and go through `features()`. The aggregates are
decayed counts kept in Redis hashes (field → float); `observe_*` update them
after the features of the current event were taken (point in time).
"""

import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Protocol, TypeVar, cast

from learner.columns import ByKey
from learner.storestats import StoreStats
from learner.taste import TYPICAL_BUY, asked_mode, bought_mode

Features = dict[str, float | str]
Aggregates = MutableMapping[str, float]
FeatureColumns = dict[
    str, float | str | list[float] | list[str] | ByKey[str, float] | ByKey[str, str]
]
"""Many candidates' features by name: a scalar is every candidate's value, a list (or a
`ByKey` of the candidates' categories) one each."""

_T = TypeVar("_T")
_KEYED_FROM = 5
"""From this many candidates on, what only a candidate's category decides is a ByKey."""

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
_CLICK_TOTAL = "ck"
_CLICK_CATEGORY = "ck:"
# Per category of the user: impressions, add-to-carts and purchases. With the clicks by
# category they give the user's own rates per category, which estimate their taste for
# it better than shares do: a share says what they did, a rate what they did of what
# they were shown.
_SHOWN_CATEGORY = "im:"
_CART_CATEGORY = "ca:"
_PURCHASE_CATEGORY = "pu:"
_CART_PRIOR = 0.05
# Impressions of each category shown in answer to a query of the user (a search or a
# category page), and all of them: what the shopper asked to see.
_ASKED_CATEGORY = "qi:"
_ASKED_TOTAL = "qi"
# The purchases each category's impressions were expected to bring: the served chances,
# summed. Not buying an item shown at the foot of a page, or of a category the visit did
# not ask for, says less of a taste than not buying a typical one.
_EXPECTED_CATEGORY = "ex:"
# Pseudo-clicks spread over the categories (half a click each for a catalogue of about
# eight), so that a shopper's first clicks move the estimate without dominating it.
_CLICK_SHARE_PRIOR = 0.5
_CLICK_SHARE_TOTAL = 4.0


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


def _category_rates(user: Mapping[str, float], category: str) -> tuple[float, float, float]:
    """The user's click, add-to-cart and purchase rates of `category`, over its impressions."""
    shown = user.get(_SHOWN_CATEGORY + category, 0.0)
    return (
        _rate(user.get(_CLICK_CATEGORY + category, 0.0), shown, _CTR_PRIOR),
        _rate(user.get(_CART_CATEGORY + category, 0.0), shown, _CART_PRIOR),
        _rate(user.get(_PURCHASE_CATEGORY + category, 0.0), shown, _CVR_PRIOR),
    )


# A query page shows about this many items: a page of query impressions is one visit.
_PAGE = 10.0

# The counts a taste is worked out from (a category's impressions, query impressions and
# purchases) are whole numbers that are never decayed, so few pairs occur in a whole
# store: each mode (Newton steps, 1-5 us) is computed once per pair, not once per category
# of every request and impression. Pure functions of their arguments: the same floats. A
# visit with a query adds its query's share to the asked counts, which moves with every
# impression the store counts: those pairs rarely repeat, and are computed each time.
_TASTES = 8_192
_asked_mode = lru_cache(maxsize=_TASTES)(asked_mode)
_bought_mode = lru_cache(maxsize=_TASTES)(bought_mode)


def _taste(
    user: Mapping[str, float], category: str, asking: float | None, position: int
) -> tuple[float, float]:
    """The shopper's taste for `category`: from what they asked for, from what they bought.

    `asking` is whether the visit being scored asks for `category` (1.0: it is the main
    category of its query's pages; 0.0: not), None for a visit without a query the store
    knows. A shopper looks for what they like, so the visit itself is evidence of their
    taste, as each earlier one is: it counts as one more visit, in the unit the history is
    counted in (a page's query impressions over the page size). Most for the shopper the
    history knows least of, for whom one visit moves the belief most. The items above
    `position` on the page were counted in the history as they were shown, so only the
    rest of the visit is added: at every position the visit counts once, as it does at
    the top of the page, where a storefront's request is scored.

    What they bought is weighed against what their impressions of the category were
    expected to bring (a shopper's hash from before that count: a typical impression's).
    """
    asked = user.get(_ASKED_CATEGORY + category, 0.0) / _PAGE
    visits = user.get(_ASKED_TOTAL, 0.0) / _PAGE
    if asking is not None:
        rest = max(0.0, 1.0 - position / _PAGE)
        asked += asking * rest
        visits += rest
    expected = user.get(_EXPECTED_CATEGORY + category)
    if expected is None:
        expected = user.get(_SHOWN_CATEGORY + category, 0.0) * TYPICAL_BUY
    return (
        _asked_mode(asked, visits),
        # Rounded so that few values occur and the mode is cached: 0.01 of a typical
        # impression moves it by less than 1e-4.
        _bought_mode(
            user.get(_PURCHASE_CATEGORY + category, 0.0), round(expected / TYPICAL_BUY, 2)
        ),
    )


def _named_in(name: str, query: str) -> bool:
    """Whether a (lowered) query names `name`, a category or a brand, or its singular:
    a shopper asks for a "sock pattern" in a category called "patterns"."""
    lowered, singular = _spellings(name)
    return lowered in query or (singular is not None and singular in query)


@lru_cache(maxsize=4_096)
def _spellings(name: str) -> tuple[str, str | None]:
    """`name` lowered, and its singular if it has one: the catalogue's names are few, so
    each is spelled out once, not at every request and impression."""
    name = name.lower()
    return name, name[:-1] if len(name) > 3 and name.endswith("s") else None


def features(
    context: ContextLike,
    item: ItemLike,
    user: Mapping[str, float],
    item_aggs: Mapping[str, float],
    at: float,
    config: FeatureConfig,
    store: StoreStats | None = None,
) -> Features:
    """The model's input for showing `item` to a user in `context` at time `at` (epoch s),
    with the store-wide statistics `store` (learner/storestats.py; None: none known)."""
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
    click_share = math.log(
        (user.get(_CLICK_CATEGORY + item.category, 0.0) + _CLICK_SHARE_PRIOR)
        / (user.get(_CLICK_TOTAL, 0.0) + _CLICK_SHARE_TOTAL)
    )
    cat_ctr, cat_cart, cat_cvr = _category_rates(user, item.category)
    query = context.query.lower()
    matches = _named_in(item.category, query) or (
        item.brand is not None and _named_in(item.brand, query)
    )
    query_share, price_mean, main = 0.0, None, None
    if store is not None:
        query_share = store.share(query, item.category)
        price_mean = store.mean_log_price(item.category)
        main = store.main_category(query)
    asking = None if main is None else 1.0 if main == item.category else 0.0
    taste_asked, taste_bought = _taste(user, item.category, asking, context.position)
    return {
        "price": item.price,
        "log_price": log_price,
        # Whether the item is dear for its kind: the hidden price term of a store is
        # relative to the category, and one weight fits it sooner than log_price beside a
        # weight per category.
        "cat_price_gap": log_price - price_mean if price_mean is not None else 0.0,
        # Attention fades down a page fast at the top and slowly further down. One form
        # only: the raw position beside it (the two correlate at 0.95) left the online
        # fit of the position effect short, under-predicting at the top of the page.
        "log_position": math.log1p(context.position),
        "query_match": 1.0 if matches else 0.0,
        # What the query asks for, as the storefront's own pages for it answer it: also for
        # queries that name no category ("budget yarn") or two ("mohair silk").
        "query_cat_share": query_share,
        # Whether the item is of the category the query asks for, as the store's pages for
        # it answer it: the match itself, where a share is only near it (about 0.7 on a
        # search page, 1.0 on a category page).
        "query_main": 0.0 if asking is None else asking,
        # No count of impressions itself, the shopper's or the item's: a count grows with
        # the stream's age, so its weight learns the clock, and the model's level then
        # drifts with it (docs/learner.md, "Counts that grow with the stream"). The rates
        # carry what the counts know of the shopper and the item.
        "u_ctr": _rate(u_clk, u_imp, _CTR_PRIOR),
        "u_cvr": _rate(u_pur, u_imp, _CVR_PRIOR),
        "u_price_gap": price_gap,
        "u_cat_share": cat_share,
        "u_cat_click": click_share,
        "u_cat_ctr": cat_ctr,
        "u_cat_cart": cat_cart,
        "u_cat_cvr": cat_cvr,
        "u_taste_asked": taste_asked,
        "u_taste_bought": taste_bought,
        "i_ctr": _rate(i_clk, i_imp, _CTR_PRIOR),
        "i_cvr": _rate(i_pur, i_imp, _CVR_PRIOR),
        "category": item.category,
        "brand": item.brand or "none",
        "device": context.device,
        "page": context.page,
        # Which categories answer which query is learned, not only spelled out (a
        # "sock pattern" search asks for "patterns", a "budget yarn" one for "acrylic").
        "query_category": f"{query}|{item.category}",
    }


ITEM_FIELDS: Final = (_TIME, _IMPRESSIONS, _CLICKS, _PURCHASES)
"""The fields of an item's aggregates that `features()` reads (ItemColumns' order)."""


@dataclass(frozen=True, slots=True)
class ItemColumns:
    """Many items' aggregates as `features_many` takes them: one list per field of
    ITEM_FIELDS, an entry per item. A count the item's hash lacks is 0.0 (as `features()`
    reads it), a time it lacks is None."""

    time: list[float | None]
    impressions: list[float]
    clicks: list[float]
    purchases: list[float]

    @classmethod
    def of(cls, item_aggs: Sequence[Mapping[str, float]]) -> "ItemColumns":
        """The columns of per-item aggregates (the learner's form)."""
        counts = ([aggs.get(name, 0.0) for aggs in item_aggs] for name in ITEM_FIELDS[1:])
        return cls([aggs.get(_TIME) for aggs in item_aggs], *counts)

    @classmethod
    def unknown(cls, n: int) -> "ItemColumns":
        """`n` items nothing is known of (as new items)."""
        return cls([None] * n, [0.0] * n, [0.0] * n, [0.0] * n)

    def __len__(self) -> int:
        return len(self.time)


def features_many(
    context: ContextLike,
    items: Sequence[ItemLike],
    user: Mapping[str, float],
    item_aggs: ItemColumns,
    at: float,
    config: FeatureConfig,
    store: StoreStats | None = None,
) -> FeatureColumns:
    """`features()` of each item for one user in one context at one time, as columns.

    What only the user and the context decide is computed once and given as a scalar;
    what only the item's category adds to them (and `query_match` when the query names
    none of the items' brands), once per category and given as a
    `ByKey` of the items' categories (a list for fewer than _KEYED_FROM items); the rest
    is a list in item order. Each reads as exactly the values and types `features()` gives
    (tests/learner/test_features.py proves that row i equals
    features(context, items[i], user, aggregates of item i, at, config, store)), in the same key
    order. `features()` stays the definition: change both together, and ITEM_FIELDS with
    what `features()` reads of an item's aggregates.
    """
    n = len(items)
    aggs = (item_aggs.time, item_aggs.impressions, item_aggs.clicks, item_aggs.purchases)
    if any(len(column) != n for column in aggs):
        raise ValueError(f"{n} items but item aggregates of {[len(c) for c in aggs]}")
    u = _decay(user, at, config)
    u_imp = user.get(_IMPRESSIONS, 0.0) * u
    u_clk = user.get(_CLICKS, 0.0) * u
    u_pur = user.get(_PURCHASES, 0.0) * u
    price_n = user.get(_PRICE_N, 0.0)
    price_mean = user.get(_PRICE_SUM, 0.0) / price_n if price_n > 0 else None
    cat_total = user.get(_CATEGORY_TOTAL, 0.0)
    query = context.query.lower()
    log1p = math.log1p

    prices = [item.price for item in items]
    log_prices = list(map(log1p, prices))
    categories = [item.category for item in items]
    brands = [item.brand for item in items]
    # Candidates share few categories and brands: each is looked up and lowered once.
    shares = dict.fromkeys(categories, 0.0)
    if cat_total > 0:
        for category in shares:
            shares[category] = user.get(_CATEGORY + category, 0.0) / cat_total
    click_total = user.get(_CLICK_TOTAL, 0.0) + _CLICK_SHARE_TOTAL
    click_shares = {
        category: math.log(
            (user.get(_CLICK_CATEGORY + category, 0.0) + _CLICK_SHARE_PRIOR) / click_total
        )
        for category in shares
    }
    rates = {category: _category_rates(user, category) for category in shares}
    query_shares = dict.fromkeys(shares, 0.0)
    price_means: dict[str, float | None] = dict.fromkeys(shares)
    if store is not None:
        for category in shares:
            query_shares[category] = store.share(query, category)
            price_means[category] = store.mean_log_price(category)
    main = store.main_category(query) if store is not None else None
    asking = {c: None if main is None else 1.0 if c == main else 0.0 for c in shares}
    position = context.position
    tastes = {category: _taste(user, category, asking[category], position) for category in shares}

    # What only the candidate's category decides is one value per category, given to each
    # candidate through its category (a ByKey column reads as the list it stands for). A
    # few candidates get lists: a ByKey saves nothing there and costs its reading.
    def by_category(table: dict[str, _T]) -> ByKey[str, _T] | list[_T]:
        if n < _KEYED_FROM:
            return [table[category] for category in categories]
        return ByKey(categories, table)

    in_query: dict[str | None, bool] = {None: False}
    for name in shares:
        in_query[name] = _named_in(name, query)
    distinct_brands = dict.fromkeys(brands)
    for brand in distinct_brands:
        if brand not in in_query:
            in_query[brand] = brand is not None and _named_in(brand, query)
    query_match: ByKey[str, float] | list[float]
    if n >= _KEYED_FROM and not any(in_query[brand] for brand in distinct_brands):
        # A query rarely names a brand: then the candidate's category alone decides.
        query_match = ByKey(categories, {c: 1.0 if in_query[c] else 0.0 for c in shares})
    else:
        query_match = [
            1.0 if in_query[category] or in_query[brand] else 0.0
            for category, brand in zip(categories, brands, strict=True)
        ]

    # _decay and _rate, inline: a call per candidate and feature was half of this loop.
    half_life = config.half_life_s
    ctr_prior = _CTR_PRIOR * _PRIOR_WEIGHT
    cvr_prior = _CVR_PRIOR * _PRIOR_WEIGHT
    decays = [
        1.0 if last is None or at <= last else 0.5 ** ((at - last) / half_life)
        for last in item_aggs.time
    ]
    imps = [v * i for v, i in zip(item_aggs.impressions, decays, strict=True)]
    i_ctr = [
        (v * i + ctr_prior) / (imp + _PRIOR_WEIGHT)
        for v, i, imp in zip(item_aggs.clicks, decays, imps, strict=True)
    ]
    i_cvr = [
        (v * i + cvr_prior) / (imp + _PRIOR_WEIGHT)
        for v, i, imp in zip(item_aggs.purchases, decays, imps, strict=True)
    ]
    return {
        "price": prices,
        "log_price": log_prices,
        "cat_price_gap": [
            lp - mean if (mean := price_means[category]) is not None else 0.0
            for lp, category in zip(log_prices, categories, strict=True)
        ],
        "log_position": math.log1p(context.position),
        "query_match": query_match,
        "query_cat_share": by_category(query_shares),
        "query_main": by_category({c: 0.0 if a is None else a for c, a in asking.items()}),
        "u_ctr": _rate(u_clk, u_imp, _CTR_PRIOR),
        "u_cvr": _rate(u_pur, u_imp, _CVR_PRIOR),
        "u_price_gap": (
            [lp - price_mean for lp in log_prices] if price_mean is not None else [0.0] * n
        ),
        "u_cat_share": by_category(shares),
        "u_cat_click": by_category(click_shares),
        "u_cat_ctr": by_category({category: rate[0] for category, rate in rates.items()}),
        "u_cat_cart": by_category({category: rate[1] for category, rate in rates.items()}),
        "u_cat_cvr": by_category({category: rate[2] for category, rate in rates.items()}),
        "u_taste_asked": by_category({category: t[0] for category, t in tastes.items()}),
        "u_taste_bought": by_category({category: t[1] for category, t in tastes.items()}),
        "i_ctr": i_ctr,
        "i_cvr": i_cvr,
        "category": by_category({category: category for category in shares}),
        "brand": [brand or "none" for brand in brands]
        if None in brands
        else cast(list[str], brands),
        "device": context.device,
        "page": context.page,
        "query_category": by_category({category: f"{query}|{category}" for category in shares}),
    }


def _advance(aggs: Aggregates, at: float, config: FeatureConfig, fields: tuple[str, ...]) -> None:
    factor = _decay(aggs, at, config)
    if factor != 1.0:
        for name in fields:
            if name in aggs:
                aggs[name] *= factor
    aggs[_TIME] = max(at, aggs.get(_TIME, at))


_COUNTS = (_IMPRESSIONS, _CLICKS, _PURCHASES)
_CATEGORY_OUTCOMES: Final = {"add_to_cart": _CART_CATEGORY, "purchase": _PURCHASE_CATEGORY}


def observe_impression(
    user: Aggregates,
    item_aggs: Aggregates,
    item: ItemLike,
    at: float,
    config: FeatureConfig,
    context: ContextLike | None = None,
    asked: str | None = None,
    served: float | None = None,
) -> None:
    """Count an impression of `item` (shown in `context`), after its features were taken.

    `asked`: the category the context's query asks for (the store's main category of it;
    None: not known yet, the item's own counts); `served`: the chance of a purchase the
    model served for it (None, or not a probability, such as a model function's NaN: a
    typical impression's)."""
    _advance(user, at, config, _COUNTS)
    _advance(item_aggs, at, config, _COUNTS)
    key = _SHOWN_CATEGORY + item.category
    user[key] = user.get(key, 0.0) + 1.0
    key = _EXPECTED_CATEGORY + item.category
    # A shopper's hash from before this count: their earlier impressions as typical ones.
    before = user.get(key, (user[_SHOWN_CATEGORY + item.category] - 1.0) * TYPICAL_BUY)
    user[key] = before + (served if served is not None and 0.0 <= served <= 1.0 else TYPICAL_BUY)
    if context is not None and context.query:
        # A query asks for one category; a page for it shows some of others as well.
        key = _ASKED_CATEGORY + (asked or item.category)
        user[key] = user.get(key, 0.0) + 1.0
        user[_ASKED_TOTAL] = user.get(_ASKED_TOTAL, 0.0) + 1.0
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
    """Count a click, add-to-cart or purchase; with the item known, also the user's price
    level and tastes.

    Price level and category affinity are long-run tastes and are not decayed. Clicks by
    category are counted apart as well: a shopper clicks far more than they buy, so the
    click share of a category is the earliest estimate of their taste for it. Carts and
    purchases by category, over the impressions of it, are the user's rates per category.
    """
    if item is not None and kind in _CATEGORY_OUTCOMES:
        key = _CATEGORY_OUTCOMES[kind] + item.category
        user[key] = user.get(key, 0.0) + 1.0
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
        if kind == "click":
            user[_CLICK_TOTAL] = user.get(_CLICK_TOTAL, 0.0) + 1.0
            key = _CLICK_CATEGORY + item.category
            user[key] = user.get(key, 0.0) + 1.0
