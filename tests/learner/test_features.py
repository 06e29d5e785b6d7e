"""The one feature pipeline: an impression and the equivalent /predict request agree exactly,
and the API's columnar `features_many` is `features()` of each candidate, exactly."""

import math
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.schemas import RequestDecoder
from learner.columns import ByKey
from learner.features import (
    ITEM_FIELDS,
    FeatureColumns,
    FeatureConfig,
    ItemColumns,
    features,
    features_many,
    observe_impression,
    observe_outcome,
)
from learner.storestats import StoreStats
from stream.events import Context, Impression, Item, parse_event

CONFIG = FeatureConfig(half_life_s=3_600.0)

categories = st.sampled_from(["merino", "alpaca", "cotton", "needles", "patterns"])
prices = st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False)
queries = st.sampled_from(["", "merino dk", "bamboo needles 4mm", "sock pattern", "alpaca"])


def history(user: dict[str, float], item: dict[str, float], steps: list[tuple[str, float]]) -> None:
    """Some past events, so the aggregates are not empty."""
    at = 1_767_225_600.0
    for kind, price in steps:
        at += 600.0
        shown = Item(price=price, category="merino")
        observe_impression(user, item, shown, at, CONFIG)
        observe_outcome(user, item, kind, shown, at, CONFIG)


@settings(max_examples=200, deadline=None)
@given(
    category=categories,
    brand=st.one_of(st.none(), st.sampled_from(["Drops", "Malabrigo"])),
    price=prices,
    query=queries,
    device=st.sampled_from(["desktop", "mobile", "tablet"]),
    position=st.integers(min_value=0, max_value=50),
    past=st.lists(
        st.tuples(st.sampled_from(["click", "add_to_cart", "purchase"]), prices), max_size=5
    ),
)
def test_an_impression_and_the_equivalent_request_get_identical_features(
    category: str,
    brand: str | None,
    price: float,
    query: str,
    device: str,
    position: int,
    past: list[tuple[str, float]],
) -> None:
    user: dict[str, float] = {}
    item_aggs: dict[str, float] = {}
    history(user, item_aggs, past)
    at = 1_767_300_000.0
    context = {"query": query, "device": device, "page": "search", "position": position}
    item = {"price": price, "category": category, **({"brand": brand} if brand else {})}

    event = parse_event(
        orjson.dumps(
            {
                "event_id": "e1",
                "type": "impression",
                "ts": "2026-01-01T21:20:00Z",
                "user_id": "u1",
                "impression_id": "i1",
                "item_id": "it1",
                "context": context,
                "item": item,
            }
        )
    )
    assert isinstance(event, Impression)
    request = RequestDecoder(max_candidates=10).decode(
        orjson.dumps(
            {"user_id": "u1", "context": context, "candidates": [{"item_id": "it1", **item}]}
        )
    )

    store = StoreStats(CONFIG.half_life_s)
    for n, (_, past_price) in enumerate(past):
        store.observe(query, category if n % 2 else "merino", past_price, at - 60.0 * n)
    learned = features(event.context, event.item, user, item_aggs, at, CONFIG, store)
    served = features(request.context, request.candidates[0], user, item_aggs, at, CONFIG, store)
    assert learned == served
    assert [type(v) for v in learned.values()] == [type(v) for v in served.values()]


def rows_of(columns: FeatureColumns, n: int) -> list[dict[str, Any]]:
    return [
        {
            name: value[i] if isinstance(value, list | ByKey) else value
            for name, value in columns.items()
        }
        for i in range(n)
    ]


def past_events(user: dict[str, float], steps: list[tuple[str, float, str, float]]) -> None:
    """Outcomes at `at` (seconds from a fixed start) of items of various categories, shown
    in answer to a query of their category or on a page without one."""
    for kind, price, category, offset in steps:
        at = 1_767_225_600.0 + offset
        item: dict[str, float] = {}
        shown = Item(price=price, category=category)
        asked = Context(query=category if kind != "view" else "", page="category")
        observe_impression(user, item, shown, at, CONFIG, asked)
        observe_outcome(user, item, kind, shown, at, CONFIG)


brands = st.one_of(st.none(), st.sampled_from(["Drops", "Malabrigo", "DROPS", "Lana Grossa"]))
offsets = st.floats(min_value=0.0, max_value=200_000.0)
kinds = st.sampled_from(["click", "add_to_cart", "purchase", "view"])
candidate = st.tuples(
    prices, categories, brands, st.lists(st.tuples(kinds, prices, categories, offsets), max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(
    candidates=st.lists(candidate, max_size=12),
    user_past=st.lists(st.tuples(kinds, prices, categories, offsets), max_size=6),
    query=st.one_of(queries, st.sampled_from(["drops merino", "LANA grossa", "Cotton"])),
    device=st.sampled_from(["desktop", "mobile"]),
    position=st.integers(min_value=0, max_value=10_000),
    at=st.floats(min_value=1_767_225_600.0, max_value=1_767_500_000.0),
)
def test_features_many_is_features_of_each_candidate(
    candidates: list[tuple[float, str, str | None, list[tuple[str, float, str, float]]]],
    user_past: list[tuple[str, float, str, float]],
    query: str,
    device: str,
    position: int,
    at: float,
) -> None:
    user: dict[str, float] = {}
    past_events(user, user_past)
    context = Context(query=query, device=device, page="search", position=position)
    items = [Item(price=p, category=c, brand=b) for p, c, b, _ in candidates]
    item_aggs: list[dict[str, float]] = []
    for _, _, _, steps in candidates:
        aggs: dict[str, float] = {}
        for kind, price, category, offset in steps:
            when = 1_767_225_600.0 + offset
            shown = Item(price=price, category=category)
            observe_impression({}, aggs, shown, when, CONFIG)
            observe_outcome({}, aggs, kind, shown, when, CONFIG)
        item_aggs.append(aggs)

    # The store-wide table as the API loads it from a published state.
    store = StoreStats(CONFIG.half_life_s)
    for n, (_, price, category, offset) in enumerate(user_past):
        shown_for = query if n % 2 else category
        store.observe(shown_for, category, price, 1_767_225_600.0 + offset)
    store = StoreStats.load(orjson.loads(orjson.dumps(store.dump())), CONFIG.half_life_s)
    columns = features_many(context, items, user, ItemColumns.of(item_aggs), at, CONFIG, store)
    expected = [
        features(context, i, user, a, at, CONFIG, store)
        for i, a in zip(items, item_aggs, strict=True)
    ]
    got = rows_of(columns, len(items))
    assert got == expected
    # Same key order and the same Python types (a River model sees exactly the same rows).
    assert [list(row.items()) for row in got] == [list(row.items()) for row in expected]
    assert [[type(v) for v in row.values()] for row in got] == [
        [type(v) for v in row.values()] for row in expected
    ]


def test_features_many_refuses_items_and_aggregates_of_different_lengths() -> None:
    items = [Item(price=1.0, category="a")] * 2
    with pytest.raises(ValueError, match="2 items"):
        features_many(Context(), items, {}, ItemColumns.unknown(1), 0.0, CONFIG)


class Reads(Mapping[str, float]):
    """A mapping that remembers which keys were read ("*" when it was iterated)."""

    def __init__(self, values: dict[str, float]) -> None:
        self.data = values
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> float:
        self.read.add(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        self.read.add("*")
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@settings(max_examples=100, deadline=None)
@given(past=st.lists(st.tuples(kinds, prices, categories, offsets), max_size=4), at=offsets)
def test_features_read_only_the_item_fields_the_api_fetches(
    past: list[tuple[str, float, str, float]], at: float
) -> None:
    # The API reads ITEM_FIELDS of each candidate's hash, no more: features() must not
    # depend on any other field of an item's aggregates.
    aggs: dict[str, float] = {"foreign": 1.0}
    for kind, price, category, offset in past:
        when = 1_767_225_600.0 + offset
        shown = Item(price=price, category=category)
        observe_impression({}, aggs, shown, when, CONFIG)
        observe_outcome({}, aggs, kind, shown, when, CONFIG)
    reads = Reads(aggs)
    item = Item(price=3.0, category="merino")
    features(Context(), item, {}, reads, 1_767_225_600.0 + at, CONFIG)
    assert reads.read <= set(ITEM_FIELDS)


def taste_of(user: dict[str, float], category: str) -> tuple[float, float]:
    f = features(Context(), Item(price=5.0, category=category), user, {}, 0.0, CONFIG)
    asked, bought = f["u_taste_asked"], f["u_taste_bought"]
    assert isinstance(asked, float) and isinstance(bought, float)
    return asked, bought


def visits(user: dict[str, float], query: str, category: str, n: int, bought: int = 0) -> None:
    """`n` visits showing a page of ten items of `category` for `query`, `bought` of them bought."""
    at = 1_767_225_600.0
    for visit in range(n):
        for position in range(10):
            at += 1.0
            shown = Item(price=5.0, category=category)
            context = Context(query=query, page="search", position=position)
            observe_impression(user, {}, shown, at, CONFIG, context)
            if visit < bought and position == 0:
                observe_outcome(user, {}, "purchase", shown, at, CONFIG)


def test_a_new_shopper_has_the_typical_taste() -> None:
    assert taste_of({}, "merino") == (0.0, 0.0)


def test_the_taste_a_shopper_asked_for_is_believed_more_the_more_they_asked() -> None:
    few: dict[str, float] = {}
    many: dict[str, float] = {}
    visits(few, "merino dk", "merino", 2)
    visits(many, "merino dk", "merino", 20)
    assert 0.0 < taste_of(few, "merino")[0] < taste_of(many, "merino")[0]
    # Asking for merino again and again says they care less for what they never ask for.
    assert taste_of(many, "cotton")[0] < taste_of(few, "cotton")[0] < 0.0


def test_pages_without_a_query_ask_for_nothing() -> None:
    user: dict[str, float] = {}
    visits(user, "", "merino", 5)
    assert taste_of(user, "merino")[0] == 0.0


def test_the_visit_being_scored_is_evidence_of_taste_most_for_a_shopper_little_known() -> None:
    # The store's pages: "merino dk" shows merino 7 times in 10, and "budget yarn" is
    # a query it has never seen.
    store = StoreStats(CONFIG.half_life_s)
    for n in range(100):
        store.observe("merino dk", "merino" if n % 10 < 7 else "cotton", 2.0, 1_767_225_600.0)

    def asked(user: dict[str, float], query: str, category: str) -> float:
        context = Context(query=query, page="search", position=0)
        x = features(context, Item(price=5.0, category=category), user, {}, 0.0, CONFIG, store)
        row = rows_of(
            features_many(
                context,
                [Item(price=5.0, category=category)],
                user,
                ItemColumns.unknown(1),
                0.0,
                CONFIG,
                store,
            ),
            1,
        )[0]
        assert row["u_taste_asked"] == x["u_taste_asked"]
        value = x["u_taste_asked"]
        assert isinstance(value, float)
        return value

    new: dict[str, float] = {}
    known: dict[str, float] = {}
    visits(known, "cotton dk", "cotton", 20)
    for user in (new, known):
        without = taste_of(user, "merino")[0]
        # Asking for merino now says they like it more; a visit not for alpaca, less.
        assert asked(user, "merino dk", "merino") > without
        assert asked(user, "merino dk", "alpaca") < taste_of(user, "alpaca")[0]
        # A query the store has not seen says nothing of what it asks for.
        assert asked(user, "budget yarn", "merino") == without
    # One visit moves the belief in a shopper the history knows little of the most.
    assert (
        asked(new, "merino dk", "merino") - taste_of(new, "merino")[0]
        > asked(known, "merino dk", "merino") - taste_of(known, "merino")[0]
    )


def test_a_visit_counts_once_at_every_position_of_its_page() -> None:
    # The shopper's history counts the page's items as they are shown; the visit being
    # scored adds only what is left of it, so the taste a storefront's request reads at
    # the top of the page is what every impression below it was learned with.
    store = StoreStats(CONFIG.half_life_s)
    for n in range(100):
        store.observe("merino dk", "merino" if n % 10 < 7 else "cotton", 2.0, 1_767_225_600.0)
    user: dict[str, float] = {}
    visits(user, "cotton dk", "cotton", 3)
    at = 1_767_300_000.0
    seen = []
    for position in range(10):
        context = Context(query="merino dk", page="search", position=position)
        category = "merino" if position % 3 else "cotton"
        shown = Item(price=5.0, category=category)
        x = features(context, Item(price=5.0, category="merino"), user, {}, at, CONFIG, store)
        seen.append((x["u_taste_asked"], x["query_main"]))
        observe_impression(user, {}, shown, at, CONFIG, context, store.main_category("merino dk"))
    assert seen == [seen[0]] * 10
    assert seen[0][1] == 1.0
    # Past the page, the visit is history.
    after = Context(query="", page="home")
    x = features(after, Item(price=5.0, category="merino"), user, {}, at, CONFIG, store)
    assert x["u_taste_asked"] == seen[0][0]


def test_not_buying_what_was_unlikely_to_sell_says_little_of_a_taste() -> None:
    # Ten merino impressions each, no purchase: served at a typical chance, at a fifth of
    # it (the foot of the page, the wrong category for the query), or at twice it.
    def shown_at(chance: float | None) -> float:
        user: dict[str, float] = {}
        for n in range(10):
            shown = Item(price=5.0, category="merino")
            at = 1_767_225_600.0 + n
            observe_impression(user, {}, shown, at, CONFIG, Context(), None, chance)
        return taste_of(user, "merino")[1]

    typical, unlikely, likely = shown_at(0.05), shown_at(0.01), shown_at(0.10)
    assert likely < typical < unlikely < 0.0
    # Without a served chance, or with one that is no probability, an impression counts
    # as a typical one.
    assert shown_at(None) == shown_at(math.nan) == shown_at(1.5) == typical
    # A shopper's hash from before the expected purchases were counted reads as typical.
    old: dict[str, float] = {}
    visits(old, "merino dk", "merino", 1)
    legacy = {k: v for k, v in old.items() if not k.startswith("ex:")}
    assert taste_of(legacy, "merino") == taste_of(old, "merino")


def test_shown_often_and_never_bought_is_believed_less_liked() -> None:
    bought: dict[str, float] = {}
    never: dict[str, float] = {}
    visits(bought, "merino dk", "merino", 3, bought=2)
    visits(never, "merino dk", "merino", 30)
    assert taste_of(bought, "merino")[1] > 0.0 > taste_of(never, "merino")[1]
    ignored: dict[str, float] = {}
    visits(ignored, "merino dk", "merino", 3)
    assert taste_of(never, "merino")[1] < taste_of(ignored, "merino")[1] < 0.0


@pytest.mark.parametrize(
    ("query", "category", "brand", "named"),
    [
        ("sock pattern", "patterns", None, True),  # the singular of a plural category
        ("merino dk", "merino", None, True),
        ("circular needles", "needles", None, True),
        ("budget yarn", "acrylic", None, False),
        ("sock pattern", "merino", "Drops", False),
        ("drops merino", "alpaca", "Drops", True),  # the brand names it
        ("", "patterns", None, False),
        ("a", "bags", "as", False),  # too short a name to strip
    ],
)
def test_a_query_names_a_category_or_brand_in_the_singular_too(
    query: str, category: str, brand: str | None, named: bool
) -> None:
    context = Context(query=query, page="search", position=0)
    item = Item(price=5.0, category=category, brand=brand)
    x = features(context, item, {}, {}, 1_767_225_600.0, CONFIG)
    assert x["query_match"] == (1.0 if named else 0.0)
    column = features_many(context, [item], {}, ItemColumns.unknown(1), 1_767_225_600.0, CONFIG)
    assert column["query_match"] == [x["query_match"]]


@pytest.mark.parametrize(
    ("query", "keyed"),
    [
        ("merino dk", True),  # names a category only: the category decides
        ("budget yarn", True),  # names nothing
        ("drops merino", False),  # names a brand: each candidate's brand counts too
    ],
)
def test_query_match_is_per_category_unless_the_query_names_a_brand(
    query: str, keyed: bool
) -> None:
    context = Context(query=query, page="search", position=0)
    names = [("merino", "Drops"), ("alpaca", None), ("merino", None), ("cotton", "Drops")]
    items = [Item(price=4.0 + i, category=c, brand=b) for i, (c, b) in enumerate(names * 2)]
    at = 1_767_225_600.0
    columns = features_many(context, items, {}, ItemColumns.unknown(len(items)), at, CONFIG)
    assert isinstance(columns["query_match"], ByKey) is keyed
    expected = [features(context, item, {}, {}, at, CONFIG) for item in items]
    assert rows_of(columns, len(items)) == expected


def test_no_feature_is_a_clock_a_shopper_who_keeps_behaving_alike_keeps_their_features() -> None:
    """A stream younger than the counts' half-life only adds to them: a feature that grows
    with a count learns the stream's age, and a model's level drifts with it. A shopper and
    an item that keep behaving alike (every fifth impression clicked, every twentieth
    bought) have the same features after 2,000 impressions and after 20,000."""
    ageless = FeatureConfig(half_life_s=1e12)
    shown = Item(price=30.0, category="merino")
    context = Context(query="merino dk", device="mobile", page="search", position=0)

    def after(n: int) -> dict[str, float | str]:
        user: dict[str, float] = {}
        item: dict[str, float] = {}
        at = 1_767_225_600.0
        for i in range(n):
            at += 60.0
            observe_impression(user, item, shown, at, ageless, context)
            if i % 5 == 0:
                observe_outcome(user, item, "click", shown, at, ageless)
            if i % 20 == 0:
                observe_outcome(user, item, "purchase", shown, at, ageless)
        return features(context, shown, user, item, at + 60.0, ageless)

    young, old = after(2_000), after(20_000)
    assert young.keys() == old.keys()
    for name, value in young.items():
        if isinstance(value, float):
            assert abs(float(old[name]) - value) < 0.02, (name, value, old[name])
        else:
            assert old[name] == value, name
