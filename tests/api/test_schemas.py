"""The request decoder: what it accepts is exactly what the event contract accepts."""

from typing import Any

import orjson
import pytest

from api.errors import InvalidRequestError, MalformedBodyError
from api.impressions import ImpressionBatch, events
from api.schemas import RequestDecoder
from stream.events import Rejection, parse_event

DECODER = RequestDecoder(max_candidates=5)


def body(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "user_id": "u00001",
        "context": {"query": "merino dk", "device": "mobile", "page": "search", "position": 2},
        "candidates": [{"item_id": "i00001", "price": 9.5, "category": "merino", "brand": "Drops"}],
    }
    request.update(overrides)
    return request


def candidate(**overrides: Any) -> dict[str, Any]:
    return {"item_id": "i00001", "price": 9.5, "category": "merino", **overrides}


def test_a_full_request_decodes() -> None:
    decoded = DECODER.decode(orjson.dumps(body(top_k=1, publish_impressions=True)))
    assert decoded.user_id == "u00001"
    assert decoded.context.position == 2
    assert decoded.candidates[0].brand == "Drops"
    assert decoded.top_k == 1 and decoded.publish_impressions is True


def test_context_defaults_are_the_event_contracts() -> None:
    decoded = DECODER.decode(orjson.dumps({"user_id": "u", "candidates": [candidate()]}))
    assert (decoded.context.query, decoded.context.device, decoded.context.page) == (
        "",
        "desktop",
        "search",
    )
    assert decoded.context.position == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (body(user_id=7), "$.user_id"),
        (body(candidates=[candidate(price="9.5")]), "$.candidates[0].price"),
        (body(candidates=[candidate(), candidate(price=True)]), "$.candidates[1].price"),
        (body(candidates=[candidate(price=1e999)]), "$.candidates[0].price"),
        (body(candidates=[candidate(price=-1)]), "$.candidates[0].price"),
        (body(candidates=[]), "$.candidates"),
        (body(candidates=[candidate()] * 6), "$.candidates"),
        (body(candidates=[candidate(colour="red")]), "$.candidates[0]"),
        (body(extra=1), "$"),
        (body(candidates=[candidate(item_id="x" * 129)]), "$.candidates[0].item_id"),
        (body(context={"query": "q" * 257}), "$.context.query"),
        (body(context={"position": 1.5}), "$.context.position"),
        (body(top_k=0), "$.top_k"),
        (body(top_k=6), "$.top_k"),
        ({"candidates": [candidate()]}, "$"),
    ],
)
def test_schema_violations_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        DECODER.decode(orjson.dumps(raw, option=orjson.OPT_PASSTHROUGH_DATACLASS))
    assert caught.value.field == field
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_id": "u", "candidates": [{"item_id": "i", "price": NaN, "category": "c"}]}',
        b'{"user_id": "u", "candidates": [{"item_id": "i", "price": Infinity, "category": "c"}]}',
        b'{"user_id": "u", "candidates": [',
        b"",
        b"\xff\xfe",
        b'{"user_id": "\\ud800", "candidates": []}',
    ],
)
def test_what_is_not_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedBodyError) as caught:
        DECODER.decode(raw)
    assert caught.value.status == 422


BOUNDARIES: list[tuple[str, dict[str, Any]]] = [
    ("id 128", body(user_id="u" * 128)),
    ("id 129", body(user_id="u" * 129)),
    ("empty id", body(candidates=[candidate(item_id="")])),
    ("name 64", body(candidates=[candidate(category="c" * 64)])),
    ("name 65", body(candidates=[candidate(brand="b" * 65)])),
    ("empty name", body(context={"device": ""})),
    ("text 256", body(context={"query": "q" * 256})),
    ("text 257", body(context={"query": "q" * 257})),
    ("position 10000", body(context={"position": 10_000})),
    ("position 10001", body(context={"position": 10_001})),
    ("negative position", body(context={"position": -1})),
    ("price 1e6", body(candidates=[candidate(price=1_000_000)])),
    ("price above 1e6", body(candidates=[candidate(price=1_000_000.01)])),
    ("price 0", body(candidates=[candidate(price=0)])),
    ("price below 0", body(candidates=[candidate(price=-0.01)])),
    ("unicode", body(user_id="é" * 128, context={"query": "ü" * 256})),
]


@pytest.mark.parametrize(("case", "raw"), BOUNDARIES, ids=[case for case, _ in BOUNDARIES])
def test_limits_are_the_event_contracts(case: str, raw: dict[str, Any]) -> None:
    """Accepted by the API if and only if its impression events pass stream.events."""
    try:
        decoded = DECODER.decode(orjson.dumps(raw))
    except InvalidRequestError:
        api_accepts = False
    else:
        api_accepts = True
        batch = ImpressionBatch(
            decoded.user_id, decoded.context, decoded.candidates, ["0" * 32 + "-999"], 1.8e9
        )
        for payload in events(batch):
            assert not isinstance(parse_event(payload), Rejection), case
    event = {
        "event_id": "e1",
        "type": "impression",
        "ts": "2026-01-01T00:00:00Z",
        "user_id": raw["user_id"],
        "impression_id": "m1",
        "item_id": raw["candidates"][0]["item_id"],
        "context": {"query": "", "device": "desktop", "page": "search", "position": 0}
        | raw["context"],
        "item": {k: v for k, v in raw["candidates"][0].items() if k != "item_id"},
    }
    contract_accepts = not isinstance(parse_event(orjson.dumps(event)), Rejection)
    assert api_accepts == contract_accepts, case
