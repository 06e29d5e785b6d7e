"""The one feature pipeline: an impression and the equivalent /predict request agree exactly."""

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from api.schemas import RequestDecoder
from learner.features import FeatureConfig, features, observe_impression, observe_outcome
from stream.events import Impression, Item, parse_event

CONFIG = FeatureConfig(half_life_s=3_600.0)

categories = st.sampled_from(["merino", "alpaca", "cotton", "needles", "patterns"])
prices = st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False)
queries = st.sampled_from(["", "merino dk", "bamboo needles 4mm", "sock pattern", "alpaca"])


def history(user: dict[str, float], item: dict[str, float], steps: list[tuple[str, float]]) -> None:
    """Some past events, so the aggregates are not empty."""
    at = 1_767_225_600.0
    for kind, price in steps:
        at += 600.0
        observe_impression(user, item, at, CONFIG)
        observe_outcome(user, item, kind, Item(price=price, category="merino"), at, CONFIG)


@settings(max_examples=200, deadline=None)
@given(
    category=categories,
    brand=st.one_of(st.none(), st.sampled_from(["Drops", "Malabrigo"])),
    price=prices,
    query=queries,
    device=st.sampled_from(["desktop", "mobile", "tablet"]),
    position=st.integers(min_value=0, max_value=50),
    past=st.lists(st.tuples(st.sampled_from(["click", "purchase"]), prices), max_size=5),
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

    learned = features(event.context, event.item, user, item_aggs, at, CONFIG)
    served = features(request.context, request.candidates[0], user, item_aggs, at, CONFIG)
    assert learned == served
    assert [type(v) for v in learned.values()] == [type(v) for v in served.values()]
