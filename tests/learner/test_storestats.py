"""The store-wide table of which categories each query's pages show, and of each
category's prices: what the features read of it, its bound, and its published form."""

import math

import orjson

from learner.features import FeatureConfig, features
from learner.storestats import StoreStats
from stream.events import Context, Item

AT = 1_767_225_600.0
DAY = 86_400.0


def page(stats: StoreStats, query: str, categories: dict[str, int], at: float) -> None:
    for category, n in categories.items():
        for _ in range(n):
            stats.observe(query, category, math.log1p(5.0), at)


def test_a_query_asks_for_the_categories_its_pages_show() -> None:
    stats = StoreStats(DAY)
    page(stats, "Budget Yarn", {"acrylic": 7, "merino": 2, "cotton": 1}, AT)
    assert stats.share("budget yarn", "acrylic") == 0.7
    assert stats.share("budget yarn", "cotton") == 0.1
    assert stats.share("budget yarn", "silk") == 0.0
    # A query never shown, or none (a home page), has no share.
    assert stats.share("mohair silk", "mohair") == 0.0
    assert stats.share("", "acrylic") == 0.0


def test_a_query_asks_for_the_category_most_of_its_pages_show() -> None:
    stats = StoreStats(DAY)
    page(stats, "Budget Yarn", {"merino": 2, "acrylic": 7, "cotton": 1}, AT)
    page(stats, "mohair silk", {"silk": 3, "mohair": 3}, AT)
    assert stats.main_category("budget yarn") == "acrylic"
    assert stats.main_category("mohair silk") == "silk"  # a tie: the first counted
    assert stats.main_category("dpn 2.5mm") is None
    assert stats.main_category("") is None
    context = Context(query="Budget yarn", page="search")
    config = FeatureConfig()
    acrylic = features(context, Item(price=3.0, category="acrylic"), {}, {}, AT, config, stats)
    merino = features(context, Item(price=3.0, category="merino"), {}, {}, AT, config, stats)
    assert (acrylic["query_main"], merino["query_main"]) == (1.0, 0.0)
    unknown = Context(query="dpn 2.5mm", page="search")
    x = features(unknown, Item(price=3.0, category="needles"), {}, {}, AT, config, stats)
    assert x["query_main"] == 0.0
    # The table travels with the model: a restored one names the same main categories.
    again = StoreStats.load(orjson.loads(orjson.dumps(stats.dump())), DAY)
    assert again.main_category("mohair silk") == "silk"


def test_the_features_read_the_share_and_the_price_relative_to_the_category() -> None:
    stats = StoreStats(DAY)
    stats.observe("dpn 2.5mm", "needles", math.log1p(4.0), AT)
    stats.observe("dpn 2.5mm", "needles", math.log1p(16.0), AT)
    stats.observe("", "merino", math.log1p(11.0), AT)
    context = Context(query="DPN 2.5mm", page="search")
    x = features(context, Item(price=9.0, category="needles"), {}, {}, AT, FeatureConfig(), stats)
    assert x["query_cat_share"] == 1.0
    mean = (math.log1p(4.0) + math.log1p(16.0)) / 2
    assert x["cat_price_gap"] == math.log1p(9.0) - mean
    other = features(context, Item(price=9.0, category="silk"), {}, {}, AT, FeatureConfig(), stats)
    assert other["query_cat_share"] == 0.0
    assert other["cat_price_gap"] == 0.0  # no price of silk seen yet
    # Without the table (none published yet) both are 0.
    bare = features(context, Item(price=9.0, category="needles"), {}, {}, AT, FeatureConfig())
    assert bare["query_cat_share"] == bare["cat_price_gap"] == 0.0


def test_older_pages_weigh_less_as_the_aggregates_decay() -> None:
    stats = StoreStats(DAY)
    page(stats, "merino dk", {"merino": 1}, AT)
    page(stats, "merino dk", {"alpaca": 1}, AT + DAY)
    # One day later, the merino page counts half: 0.5 / 1.5.
    assert math.isclose(stats.share("merino dk", "merino"), 1 / 3)
    # An event from before the latest weighs as the latest (as the aggregates' decay is
    # capped for events that interleave out of time order).
    page(stats, "merino dk", {"merino": 1}, AT)
    assert math.isclose(stats.share("merino dk", "merino"), 3 / 5)


def test_rescaling_the_weights_keeps_the_shares() -> None:
    stats = StoreStats(1.0)
    page(stats, "cotton dk", {"cotton": 3, "silk": 1}, AT)
    page(stats, "cotton dk", {"cotton": 3, "silk": 1}, AT + 31.0)  # past 2^30: rescaled
    assert stats.t0 == AT + 31.0
    assert math.isclose(stats.share("cotton dk", "cotton"), 0.75)
    page(stats, "cotton dk", {"silk": 4}, AT + 100.0)
    assert math.isclose(stats.share("cotton dk", "silk"), 1.0, rel_tol=1e-9)


def test_the_table_keeps_the_most_frequent_queries() -> None:
    stats = StoreStats(DAY, max_queries=3)
    for n, query in enumerate(["a", "b", "c", "d"]):
        page(stats, query, {"merino": 10 - n}, AT)
    assert len(stats.queries) == 4  # up to twice the bound between prunes
    for query in ["e", "f", "g"]:
        page(stats, query, {"merino": 1}, AT)
    # The seventh query pruned the table to the three most frequent, then joined it.
    assert sorted(stats.queries) == ["a", "b", "c", "g"]
    assert stats.share("f", "merino") == 0.0
    assert stats.share("g", "merino") == stats.share("a", "merino") == 1.0


def test_the_published_table_reads_back_exactly() -> None:
    stats = StoreStats(DAY)
    for n in range(50):
        stats.observe(f"query {n % 7}", ["merino", "silk", "cotton"][n % 3], 0.1 * n, AT + n)
    loaded = StoreStats.load(orjson.loads(orjson.dumps(stats.dump())), DAY)
    assert loaded.dump() == stats.dump()
    stats.observe("query 1", "silk", 2.0, AT + 99.0)
    loaded.observe("query 1", "silk", 2.0, AT + 99.0)
    assert loaded.dump() == stats.dump()
    # A state published before the table: an empty one.
    assert StoreStats.load(None, DAY).dump() == StoreStats(DAY).dump()
