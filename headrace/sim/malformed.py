"""Broken records, the kinds real producers send, for the dead-letter path to catch.

Every kind here must be rejected by stream.events.parse_event; the tests hold
each one to that.
"""

import json
import random
from collections.abc import Callable
from typing import Any, Final

from stream.events import MAX_EVENT_BYTES

Template = dict[str, Any]


def _dump(record: Template) -> bytes:
    # allow_nan: a broken producer's NaN must reach the wire as the bare token NaN.
    return json.dumps(record, separators=(",", ":"), allow_nan=True).encode()


def _truncated(rng: random.Random, record: Template) -> bytes:
    raw = _dump(record)
    return raw[: rng.randint(1, len(raw) - 1)]


def _not_json(rng: random.Random, record: Template) -> bytes:
    return rng.choice((b"", b"GET /events HTTP/1.1", b"\xff\xfe\x00garbage", b"{'type': 'click'}"))


def _naive_ts(rng: random.Random, record: Template) -> bytes:
    record["ts"] = record["ts"].removesuffix("Z")
    return _dump(record)


def _missing_field(rng: random.Random, record: Template) -> bytes:
    del record[rng.choice(("event_id", "ts", "user_id", "item_id"))]
    return _dump(record)


def _wrong_type(rng: random.Random, record: Template) -> bytes:
    if rng.random() < 0.5:
        record["context"]["position"] = "third"
    else:
        record["item"]["price"] = "cheap"
    return _dump(record)


def _bad_price(rng: random.Random, record: Template) -> bytes:
    record["item"]["price"] = rng.choice((float("nan"), float("inf"), -4.5))
    return _dump(record)


def _unknown_type(rng: random.Random, record: Template) -> bytes:
    record["type"] = rng.choice(("wishlist", "refund", "Impression", ""))
    return _dump(record)


def _oversize_string(rng: random.Random, record: Template) -> bytes:
    if rng.random() < 0.5:
        record["context"]["query"] = "merino " * 60  # over the 256-character query limit
    else:
        record["item_id"] = "i" * 200  # over the 128-character id limit
    return _dump(record)


def _extra_field(rng: random.Random, record: Template) -> bytes:
    record["coupon"] = "KNIT10"
    return _dump(record)


def _too_large(rng: random.Random, record: Template) -> bytes:
    record["context"]["query"] = "x" * (MAX_EVENT_BYTES + 16)
    return _dump(record)


def _not_object(rng: random.Random, record: Template) -> bytes:
    return rng.choice((b"null", b"[]", b'"impression"', b"42"))


# Kind -> (weight, maker). too_large is rare and costly (64 KiB a record).
KINDS: Final[dict[str, tuple[float, Callable[[random.Random, Template], bytes]]]] = {
    "truncated": (3, _truncated),
    "not_json": (2, _not_json),
    "naive_ts": (3, _naive_ts),
    "missing_field": (3, _missing_field),
    "wrong_type": (2, _wrong_type),
    "bad_price": (2, _bad_price),
    "unknown_type": (2, _unknown_type),
    "oversize_string": (2, _oversize_string),
    "extra_field": (2, _extra_field),
    "not_object": (1, _not_object),
    "too_large": (0.2, _too_large),
}
_NAMES: Final = tuple(KINDS)
_WEIGHTS: Final = tuple(weight for weight, _ in KINDS.values())


def malformed(rng: random.Random, template: Template, kind: str | None = None) -> bytes:
    """Break a well-formed impression `template` (a JSON-ready dict, consumed) in one way."""
    name = kind or rng.choices(_NAMES, _WEIGHTS)[0]
    return KINDS[name][1](rng, template)
