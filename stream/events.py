"""The event contract: what producers publish to the `events` topic.

A leaf module: it imports only pydantic and the standard library, so every
package can depend on it. Parsing never raises: raw bytes become either an
event or a `Rejection` that says why, for the dead-letter topic.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

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

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
"""Identifiers: event, user, item, impression."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
"""Short names: categories, devices, pages, feature names."""

Text = Annotated[str, StringConstraints(max_length=256)]
"""Free text such as a search query."""

Price = Annotated[float, Field(ge=0, le=1_000_000)]

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
    position: int = Field(default=0, ge=0, le=10_000)


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


def parse_event(raw: bytes | None) -> Event | Rejection:
    """Parse one Kafka record value into an event, or say why it is not one."""
    if raw is None:
        return Rejection("invalid_json", "empty record (null value)", b"")
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection(
            "too_large", f"record is {len(raw)} bytes, the limit is {MAX_EVENT_BYTES}", raw
        )
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return _rejection(exc, raw)


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
