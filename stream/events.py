"""The event contract: what producers publish to the `events` topic.

A leaf module: it imports only pydantic and the standard library, so every
package can depend on it. Parsing never raises: raw bytes become either an
event or a `Rejection` that says why, for the dead-letter topic.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

MAX_EVENT_BYTES: Final = 64 * 1024
"""Largest raw event accepted; anything bigger is rejected before JSON parsing."""

MAX_FEATURES: Final = 256
"""Most features a `labeled` event may carry."""

# The contract's limits, here once: the API's /predict decoder (api/schemas.py) holds its
# requests to the same numbers, so whatever it accepts it can publish as an impression.
ID_MAX: Final = 128
NAME_MAX: Final = 64
TEXT_MAX: Final = 256
POSITION_MAX: Final = 10_000
PRICE_MAX: Final = 1_000_000

Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX)]
"""Identifiers: event, user, item, impression."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)]
"""Short names: categories, devices, pages, feature names."""

Text = Annotated[str, StringConstraints(max_length=TEXT_MAX)]
"""Free text such as a search query."""

Price = Annotated[float, Field(ge=0, le=PRICE_MAX)]

FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | Text


class _Model(BaseModel):
    # Strict: a number sent as a string, a Unix timestamp for `ts` or "true" for a
    # label is a producer bug, and is rejected rather than silently coerced.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)


class Context(_Model):
    """Where and how an item was shown."""

    query: Text = ""
    device: Name = "desktop"
    page: Name = "search"
    position: int = Field(default=0, ge=0, le=POSITION_MAX)


class Item(_Model):
    """What the storefront knows of an item when it shows it."""

    price: Price
    category: Name
    brand: Name | None = None


class _Event(_Model):
    event_id: Id
    ts: AwareDatetime
    """Event time, RFC 3339 with a time zone."""
    user_id: Id


class Impression(_Event):
    """An item was shown to a user."""

    type: Literal["impression"] = "impression"
    impression_id: Id
    item_id: Id
    context: Context = Context()
    item: Item


class _Outcome(_Event):
    item_id: Id
    impression_id: Id | None = None
    """The impression this outcome answers, where the storefront knows it."""


class Click(_Outcome):
    type: Literal["click"] = "click"


class AddToCart(_Outcome):
    type: Literal["add_to_cart"] = "add_to_cart"


class Purchase(_Outcome):
    type: Literal["purchase"] = "purchase"


class Labeled(_Event):
    """A ready training example, for producers that do their own joins."""

    type: Literal["labeled"] = "labeled"
    features: Annotated[dict[Name, FeatureValue], Field(max_length=MAX_FEATURES)]
    label: bool


Event = Annotated[
    Impression | Click | AddToCart | Purchase | Labeled,
    Field(discriminator="type"),
]
Outcome = Click | AddToCart | Purchase
EVENT_TYPES: Final = ("impression", "click", "add_to_cart", "purchase", "labeled")

_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that is not an event, and why; it goes to the dead-letter topic."""

    reason: str
    """Short machine-readable cause: too_large, invalid_json, unknown_type, schema."""
    detail: str
    """Human-readable explanation naming the offending field."""
    raw: bytes


@dataclass(frozen=True, slots=True)
class Verdict:
    """An event the fraud guard blocked: the rule, the figures it judged, why in words.

    It goes to the quarantine topic with these as headers, and is not learned."""

    rule: str
    figures: dict[str, float]
    message: str


def parse_event(raw: bytes | None) -> Event | Rejection:
    """Parse one Kafka record value into an event, or say why it is not one."""
    if raw is None:
        return Rejection("invalid_json", "empty record (null value)", b"")
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection(
            "too_large", f"record is {len(raw)} bytes, the limit is {MAX_EVENT_BYTES}", raw
        )
    try:
        event = _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return _rejection(exc, raw)
    repeated = _repeated_key(raw, event)
    if repeated is not None:
        return Rejection("schema", f"{repeated[:64]}: duplicate key (send each field once)", raw)
    return event


class _RepeatedKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _repeated_key(raw: bytes, event: BaseModel) -> str | None:
    """A key that an object of `raw` repeats, or None.

    Parsers disagree on a repeated key (pydantic keeps the last value, others the first),
    so such a record could teach the learner one event and show another consumer of the
    topic another. Fast path, exact: without a backslash every `"` of the record delimits
    a string, and every key and every string value is one string, so the record holds as
    many as the parsed event shows (pydantic keeps which fields were sent) unless a key
    repeats. Otherwise (escapes, or counts that differ) the standard library reads it
    again and names the key: several times slower, and rare.
    """
    if b"\\" not in raw and raw.count(b'"') == 2 * _strings(event):
        return None
    try:
        json.loads(raw, object_pairs_hook=_unique)
    except _RepeatedKeyError as exc:
        return exc.key
    except ValueError:  # what pydantic read, the standard library should too
        return None
    return None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKeyError(key)
            seen.add(key)
    return found


@dataclass(frozen=True, slots=True)
class _Shape:
    """How a model's fields are written in JSON, for counting its strings."""

    strings: frozenset[str]
    """Fields written as a JSON string (ids, names, text, `type`, `ts`) unless null."""
    nullable: tuple[str, ...]
    """Those of them that may be null instead."""
    nested: tuple[str, ...]
    """Objects: nested models and dicts."""


_SHAPES: dict[type[BaseModel], _Shape] = {}


def _is_string(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation in (str, datetime, AwareDatetime) or get_origin(annotation) is Literal


def _shape(cls: type[BaseModel]) -> _Shape:
    strings: set[str] = set()
    nullable: list[str] = []
    nested: list[str] = []
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if get_origin(annotation) in (Union, UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1 or not _is_string(args[0]):
                raise TypeError(f"{cls.__name__}.{name}: a union the duplicate check cannot count")
            strings.add(name)
            nullable.append(name)
        elif _is_string(annotation):
            strings.add(name)
        elif get_origin(annotation) is dict or (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        ):
            nested.append(name)
    return _Shape(frozenset(strings), tuple(nullable), tuple(nested))


def _strings(model: BaseModel) -> int:
    """JSON strings (keys and string values) the fields `model` was given were written as.

    Set operations on the fields pydantic says were sent: under 2 us an event."""
    shape = _SHAPES.get(type(model))
    if shape is None:
        shape = _SHAPES[type(model)] = _shape(type(model))
    sent = model.__pydantic_fields_set__
    values = model.__dict__
    n = len(sent) + len(shape.strings.intersection(sent))
    for name in shape.nullable:
        if name in sent and values[name] is None:
            n -= 1
    for name in shape.nested:
        if name in sent:
            value = values[name]
            if isinstance(value, BaseModel):
                n += _strings(value)
            else:
                n += len(value) + sum(isinstance(v, str) for v in value.values())
    return n


def _rejection(exc: ValidationError, raw: bytes) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        return Rejection("invalid_json", f"not valid JSON: {first['msg']}", raw)
    if kind in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type"):
        return Rejection("unknown_type", _describe(first), raw)
    detail = "; ".join(_describe(e) for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return Rejection("schema", detail, raw)


def _describe(error: Any) -> str:
    loc = error["loc"]
    # The first location element is the discriminator tag; it is noise for producers.
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]
    where = ".".join(str(part) for part in loc) or "event"
    return f"{where}: {error['msg']}"


def dump_event(event: Impression | Click | AddToCart | Purchase | Labeled) -> bytes:
    """Serialize an event to the bytes producers publish."""
    return event.__pydantic_serializer__.to_json(event, exclude_none=True)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the contract, for producers in other languages."""
    schema = _ADAPTER.json_schema()
    schema["title"] = "headrace event"
    # `type` has a default in the Python constructors, but on the wire it is required.
    for definition in schema.get("$defs", {}).values():
        if "type" in definition.get("properties", {}):
            definition.setdefault("required", []).append("type")
    return schema
