"""The event contract: the documented examples parse, and every kind of bad record is rejected."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream.events import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    MAX_FEATURES,
    AddToCart,
    Click,
    Context,
    Impression,
    Item,
    Labeled,
    Purchase,
    Rejection,
    dump_event,
    json_schema,
    parse_event,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
_FENCE = re.compile(r"^```json\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_examples() -> dict[str, dict[str, Any]]:
    """The ```json blocks of docs/events.md, by event type."""
    examples: dict[str, dict[str, Any]] = {}
    for block in _FENCE.findall(DOC.read_text(encoding="utf-8")):
        example = json.loads(block)
        assert example["type"] not in examples, f"two examples of {example['type']}"
        examples[example["type"]] = example
    return examples


EXAMPLES = doc_examples()


def raw(example: dict[str, Any]) -> bytes:
    return json.dumps(example).encode()


def variant(event_type: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of the documented example with top-level fields replaced."""
    example: dict[str, Any] = json.loads(json.dumps(EXAMPLES[event_type]))
    example.update(changes)
    return example


def rejected(value: bytes | None) -> Rejection:
    result = parse_event(value)
    assert isinstance(result, Rejection), f"accepted: {result!r}"
    return result


def test_the_doc_has_one_example_of_each_type() -> None:
    assert sorted(EXAMPLES) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_documented_example_parses(event_type: str) -> None:
    event = parse_event(raw(EXAMPLES[event_type]))
    assert not isinstance(event, Rejection), event
    assert event.type == event_type
    assert event.event_id == EXAMPLES[event_type]["event_id"]
    assert event.ts.utcoffset() is not None


def test_example_fields_arrive_typed() -> None:
    impression = parse_event(raw(EXAMPLES["impression"]))
    assert isinstance(impression, Impression)
    assert impression.context == Context(
        query="merino dk", device="mobile", page="search", position=3
    )
    assert impression.item == Item(price=12.95, category="merino", brand="Malabrigo")
    labeled = parse_event(raw(EXAMPLES["labeled"]))
    assert isinstance(labeled, Labeled)
    assert labeled.label is True
    assert labeled.features["price"] == 6.5
    assert labeled.features["category"] == "patterns"


TS = datetime(2026, 1, 1, 9, 30, 0, 120_000, tzinfo=UTC)
ROUND_TRIP: list[Impression | Click | AddToCart | Purchase | Labeled] = [
    Impression(
        event_id="e1",
        ts=TS,
        user_id="u1",
        impression_id="m1",
        item_id="i1",
        context=Context(query="alpaca lace", device="tablet", page="category", position=7),
        item=Item(price=14.0, category="alpaca"),
    ),
    Click(event_id="e2", ts=TS, user_id="u1", item_id="i1", impression_id="m1"),
    AddToCart(event_id="e3", ts=TS, user_id="u1", item_id="i1"),
    Purchase(event_id="e4", ts=TS, user_id="u1", item_id="i1", impression_id="m1"),
    Labeled(
        event_id="e5",
        ts=TS,
        user_id="u1",
        features={"price": 3.5, "query": "ünïcode ✓", "position": 0},
        label=False,
    ),
]


@pytest.mark.parametrize("event", ROUND_TRIP, ids=lambda e: e.type)
def test_round_trip(event: Impression | Click | AddToCart | Purchase | Labeled) -> None:
    dumped = dump_event(event)
    parsed = parse_event(dumped)
    assert parsed == event
    assert type(parsed) is type(event)


def test_dump_writes_utc_as_z_and_leaves_out_missing_options() -> None:
    dumped = json.loads(dump_event(ROUND_TRIP[2]))
    assert dumped["ts"] == "2026-01-01T09:30:00.120000Z"
    assert "impression_id" not in dumped


def test_offset_timestamps_keep_their_instant() -> None:
    event = parse_event(raw(EXAMPLES["add_to_cart"]))
    assert not isinstance(event, Rejection)
    assert event.ts == datetime(2026, 1, 1, 9, 30, 52, 6_000, tzinfo=UTC)


# --- rejections: (reason, a word the detail must contain) -----------------------


def test_bad_json() -> None:
    rejection = rejected(raw(EXAMPLES["click"])[:-5])
    assert rejection.reason == "invalid_json"
    assert "JSON" in rejection.detail


@pytest.mark.parametrize("value", [b"", b"\xff\xfe\x00", b"{'type': 'click'}", b"GET / HTTP/1.1"])
def test_not_json(value: bytes) -> None:
    assert rejected(value).reason == "invalid_json"


def test_null_record() -> None:
    rejection = rejected(None)
    assert rejection.reason == "invalid_json"
    assert "null" in rejection.detail
    assert rejection.raw == b""


@pytest.mark.parametrize("value", [b"null", b"[]", b'"impression"', b"42"])
def test_json_that_is_not_an_object(value: bytes) -> None:
    rejection = rejected(value)
    assert rejection.reason == "schema"
    assert "object" in rejection.detail


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("click", "item_id", 17),
        ("impression", "item", "a skein"),
        ("labeled", "label", "maybe"),
        ("purchase", "impression_id", ["m1"]),
        ("click", "ts", "yesterday"),
    ],
)
def test_wrong_type_for_a_field(event_type: str, field: str, value: Any) -> None:
    rejection = rejected(raw(variant(event_type, **{field: value})))
    assert rejection.reason == "schema"
    assert rejection.detail.startswith(f"{field}")


def test_wrong_type_in_a_nested_field() -> None:
    example = variant("impression")
    example["context"]["position"] = "third"
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert "context.position" in rejection.detail


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("impression", "event_id"),
        ("impression", "ts"),
        ("impression", "user_id"),
        ("impression", "impression_id"),
        ("impression", "item"),
        ("click", "item_id"),
        ("labeled", "features"),
        ("labeled", "label"),
    ],
)
def test_missing_field(event_type: str, field: str) -> None:
    example = variant(event_type)
    del example[field]
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert f"{field}: Field required" in rejection.detail


def test_missing_nested_field() -> None:
    example = variant("impression")
    del example["item"]["category"]
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert "item.category" in rejection.detail


@pytest.mark.parametrize(
    ("ts", "problem"),
    [
        ("2026-01-01T09:30:00", "timezone"),
        ("2026-01-01T09:30:00.5", "timezone"),
        # A date alone is not an instant at all (strict parsing).
        ("2026-01-01", "valid datetime"),
    ],
)
def test_naive_timestamp(ts: str, problem: str) -> None:
    rejection = rejected(raw(variant("purchase", ts=ts)))
    assert rejection.reason == "schema"
    assert "ts" in rejection.detail
    assert problem in rejection.detail


@pytest.mark.parametrize(
    ("field", "limit"),
    [("event_id", 128), ("user_id", 128), ("item_id", 128), ("impression_id", 128)],
)
def test_oversize_id(field: str, limit: int) -> None:
    assert not isinstance(
        parse_event(raw(variant("impression", **{field: "x" * limit}))), Rejection
    )
    rejection = rejected(raw(variant("impression", **{field: "x" * (limit + 1)})))
    assert rejection.reason == "schema"
    assert field in rejection.detail
    assert str(limit) in rejection.detail


@pytest.mark.parametrize(
    ("part", "field", "limit"),
    [("context", "query", 256), ("context", "device", 64), ("item", "category", 64)],
)
def test_oversize_nested_string(part: str, field: str, limit: int) -> None:
    example = variant("impression")
    example[part][field] = "y" * (limit + 1)
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert f"{part}.{field}" in rejection.detail


def test_empty_id() -> None:
    rejection = rejected(raw(variant("click", user_id="")))
    assert rejection.reason == "schema"
    assert "user_id" in rejection.detail


def test_oversize_feature_name_and_value() -> None:
    example = variant("labeled")
    example["features"] = {"n" * 65: 1.0}
    assert "features" in rejected(raw(example)).detail
    example["features"] = {"colour": "z" * 257}
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert "features.colour" in rejection.detail


@pytest.mark.parametrize("event_type", [None, "wishlist", "Impression", "", 3])
def test_unknown_or_missing_type(event_type: object) -> None:
    example = variant("click")
    if event_type is None:
        del example["type"]
    else:
        example["type"] = event_type
    rejection = rejected(raw(example))
    assert rejection.reason == "unknown_type"
    assert "type" in rejection.detail


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_price(token: str) -> None:
    text = raw(EXAMPLES["impression"]).decode().replace('"price": 12.95', f'"price": {token}')
    assert token in text
    rejection = rejected(text.encode())
    assert rejection.reason == "schema"
    assert "item.price" in rejection.detail
    assert "finite" in rejection.detail


@pytest.mark.parametrize("token", ["NaN", "Infinity"])
def test_nan_and_infinity_feature(token: str) -> None:
    text = raw(EXAMPLES["labeled"]).decode().replace('"price": 6.5', f'"price": {token}')
    rejection = rejected(text.encode())
    assert rejection.reason == "schema"
    assert "features.price" in rejection.detail


@pytest.mark.parametrize("price", [-0.01, 1_000_000.01])
def test_price_out_of_range(price: float) -> None:
    example = variant("impression")
    example["item"]["price"] = price
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert "item.price" in rejection.detail


def test_position_out_of_range() -> None:
    example = variant("impression")
    example["context"]["position"] = -1
    assert "context.position" in rejected(raw(example)).detail


@pytest.mark.parametrize("where", ["event", "context", "item"])
def test_extra_field(where: str) -> None:
    example = variant("impression")
    target = example if where == "event" else example[where]
    target["coupon"] = "KNIT10"
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert "coupon" in rejection.detail
    assert "Extra inputs" in rejection.detail


def test_features_at_the_limit_and_over() -> None:
    example = variant("labeled")
    example["features"] = {f"f{i}": float(i) for i in range(MAX_FEATURES)}
    assert isinstance(parse_event(raw(example)), Labeled)
    example["features"][f"f{MAX_FEATURES}"] = 1.0
    rejection = rejected(raw(example))
    assert rejection.reason == "schema"
    assert "features" in rejection.detail
    assert str(MAX_FEATURES) in rejection.detail


def test_record_over_max_event_bytes() -> None:
    example = variant("click")
    example["user_id"] = "u"  # pad with spaces: still valid JSON, only the size is wrong
    value = raw(example)
    padded = value[:-1] + b" " * (MAX_EVENT_BYTES - len(value)) + b"}"
    assert len(padded) == MAX_EVENT_BYTES
    assert not isinstance(parse_event(padded), Rejection)
    over = value[:-1] + b" " * (MAX_EVENT_BYTES + 1 - len(value)) + b"}"
    rejection = rejected(over)
    assert rejection.reason == "too_large"
    assert str(MAX_EVENT_BYTES) in rejection.detail
    assert str(len(over)) in rejection.detail


def test_rejection_keeps_the_raw_bytes() -> None:
    value = raw(variant("click", ts="2026-01-01T09:30:00"))
    assert rejected(value).raw == value


def test_several_problems_are_all_named() -> None:
    example = variant("impression", user_id="", ts="2026-01-01T09:30:00")
    del example["item_id"]
    detail = rejected(raw(example)).detail
    for field in ("user_id", "ts", "item_id"):
        assert field in detail


# --- repeated keys --------------------------------------------------------------------


def _repeat(record: bytes, key: str, value: str, spelled: str | None = None) -> bytes:
    """`record` with `"key": value` written again right after its first `"key": ...`."""
    at = record.index(b'"%s"' % key.encode())
    again = b'"%s": %s, ' % ((spelled or key).encode(), value.encode())
    return record[:at] + again + record[at:]


@pytest.mark.parametrize(
    ("event_type", "key", "value", "spelled"),
    [
        ("click", "user_id", '"u99999"', None),
        ("click", "type", '"purchase"', None),
        ("impression", "price", "0.5", None),  # inside `item`
        ("impression", "query", '"cheap"', None),  # inside `context`
        ("purchase", "impression_id", "null", None),
        ("labeled", "user_id", '"u2"', "user_\\u0069d"),  # the same key, escaped
        ("impression", "item_id", '"i1"', 'item_id" '),  # whitespace before the colon
    ],
)
def test_a_repeated_key_is_rejected_and_named(
    event_type: str, key: str, value: str, spelled: str | None
) -> None:
    record = raw(EXAMPLES[event_type])
    assert not isinstance(parse_event(record), Rejection)
    if spelled == 'item_id" ':
        repeated = record.replace(b'"item_id": ', b'"item_id" : "i1", "item_id"   : ', 1)
    else:
        repeated = _repeat(record, key, value, spelled)
    rejection = rejected(repeated)
    assert rejection.reason == "schema"
    assert rejection.detail.startswith(f"{key}: duplicate key")


def _first_value(obj: Any, key: str) -> Any:
    """The value of the first `key` in `obj`, in document order."""
    for name, value in obj.items():
        if name == key:
            return value
        if isinstance(value, dict):
            found = _first_value(value, key)
            if found is not _MISSING:
                return found
    return _MISSING


_MISSING = object()


def test_a_repeated_feature_name_is_rejected() -> None:
    record = raw(EXAMPLES["labeled"])
    name = next(iter(EXAMPLES["labeled"]["features"]))
    rejection = rejected(_repeat(record, name, '"other"'))
    assert rejection.detail.startswith(f"{name}: duplicate key")


@pytest.mark.parametrize(
    "dump",
    [
        lambda e: json.dumps(e).encode(),
        lambda e: json.dumps(e, separators=(",", ":")).encode(),
        lambda e: json.dumps(e, indent=2, ensure_ascii=False).encode(),
        lambda e: json.dumps(e, separators=(" ,\t", "\n :  "), ensure_ascii=False).encode(),
    ],
)
@pytest.mark.parametrize("text", ["plain text", 'escaped "text", \\ é: {1}'])
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_records_without_repeats_are_accepted_however_written(
    event_type: str, text: str, dump: Any
) -> None:
    example = variant(event_type, user_id=text)
    if event_type == "impression":
        example["context"]["query"] = text
        example["item"]["brand"] = None
    parsed = parse_event(dump(example))
    assert not isinstance(parsed, Rejection), parsed
    assert parsed.user_id == text


def test_every_field_written_once_or_repeated_is_told_apart() -> None:
    """Each field of simulated events repeated in turn: every copy is caught, by the fast
    count on plain records and by the full read on escaped ones."""
    from headrace.sim.simulator import SimulatorConfig, generate

    by_type: dict[str, list[bytes]] = {t: [] for t in EVENT_TYPES}
    for r in generate(SimulatorConfig(seed=8, count=3_000)):
        by_type[json.loads(r.value)["type"]].append(r.value)
    by_type["labeled"].append(json.dumps(EXAMPLES["labeled"], separators=(",", ":")).encode())
    records = [r for found in by_type.values() for r in found[:30]]
    assert {json.loads(r)["type"] for r in records} == set(EVENT_TYPES)
    for record in records:
        assert not isinstance(parse_event(record), Rejection), record
        escaped = json.dumps(json.loads(record), ensure_ascii=True).replace("_", "\\u005f")
        assert not isinstance(parse_event(escaped.encode()), Rejection), escaped
        for key in re.findall(rb'"([a-z_]+)":', record):
            value = json.dumps(_first_value(json.loads(record), key.decode()))
            rejection = rejected(_repeat(record, key.decode(), value))
            assert rejection.detail.startswith(f"{key.decode()}: duplicate key"), rejection


# --- JSON Schema -----------------------------------------------------------------


def test_json_schema_covers_the_five_types() -> None:
    schema = json_schema()
    json.dumps(schema)  # serializable as is
    assert schema["title"] == "headrace event"
    assert schema["discriminator"]["propertyName"] == "type"
    assert len(schema["oneOf"]) == len(EVENT_TYPES)
    consts = {
        definition["properties"]["type"]["const"]
        for name, definition in schema["$defs"].items()
        if "type" in definition.get("properties", {})
    }
    assert consts == set(EVENT_TYPES)


def test_json_schema_states_the_limits() -> None:
    defs = json_schema()["$defs"]
    assert defs["Impression"]["additionalProperties"] is False
    assert defs["Click"]["properties"]["event_id"]["maxLength"] == 128
    assert defs["Context"]["properties"]["query"]["maxLength"] == 256
    assert defs["Item"]["properties"]["price"]["maximum"] == 1_000_000
    assert defs["Labeled"]["properties"]["features"]["maxProperties"] == MAX_FEATURES
    assert set(defs["Impression"]["required"]) >= {"event_id", "ts", "user_id", "item"}
