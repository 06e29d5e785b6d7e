"""A request's online aggregates: the user's hash and every candidate item's, one round trip.

One pipeline on the shared asyncio connection (`api.resp`): HGETALL of the user's hash,
decoded as the learner's `decode_hash` does, and HMGET of the fields `features()` reads
of each item (`learner.features.ITEM_FIELDS`), parsed straight into columns: no field
names to decode and no dict per candidate (at 100 candidates that decoding was a fifth
of a request's time). An item whose hash is not the learner's (a wrong type, or a field
that is not a number) counts as a new item. While Redis is known to be away
(`RedisHealth`), requests do not try it at all: they are answered from empty aggregates,
and the model holder's polling says when Redis is back.
"""

import functools
import logging
import re
import threading
from collections.abc import Sequence
from itertools import chain
from typing import Any, cast

import msgspec

from api.resp import RespError, RespPipeline
from learner.aggregates import decode_hash
from learner.features import ITEM_FIELDS, ItemColumns
from learner.layout import ShardKeys

log = logging.getLogger("headrace.api")

Aggregates = dict[str, float]


class RedisHealth:
    """Whether Redis answered lately, and if not, why (for /ready)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ok = False
        self.reason = "Redis not reached yet"

    def up(self) -> None:
        if not self.ok:
            with self._lock:
                if not self.ok:
                    log.info("Redis reachable")
                self.ok = True
                self.reason = ""

    def down(self, reason: str) -> None:
        with self._lock:
            if self.ok:
                log.warning("Redis unreachable: %s", reason)
            self.ok = False
            self.reason = reason


def _hgetall(key: bytes) -> bytes:
    return b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b\r\n" % (len(key), key)


class _ItemCommands(dict[str, bytes]):
    """Each item id's HMGET of `fields`, packed once and kept: a catalogue's ids come back
    request after request, and packing 100 of them was 3 % of a request. Bounded: the
    oldest packed goes first."""

    def __init__(self, prefix: bytes, fields: Sequence[str], size: int = 65_536) -> None:
        super().__init__()
        self._head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2)
        self._prefix = prefix
        self._names = b"".join(b"$%d\r\n%b\r\n" % (len(f), f) for f in map(str.encode, fields))
        self._size = size

    def __missing__(self, item_id: str) -> bytes:
        key = self._prefix + item_id.encode()
        packed = b"%b$%d\r\n%b\r\n%b" % (self._head, len(key), key, self._names)
        if len(self) >= self._size:
            del self[next(iter(self))]
        self[item_id] = packed
        return packed


@functools.cache
def _item_commands(prefix: bytes, fields: tuple[str, ...]) -> _ItemCommands:
    return _ItemCommands(prefix, fields)


def _hmget_items(prefix: bytes, item_ids: Sequence[str], fields: Sequence[str]) -> bytes:
    """HMGET `fields` of each `prefix + item_id`, as one buffer."""
    return b"".join(map(_item_commands(prefix, tuple(fields)).__getitem__, item_ids))


@functools.cache
def _item_prefix(keys: ShardKeys) -> bytes:
    """What keys.item(item_id) puts before the id (checked, not assumed)."""
    prefix = keys.item("")
    if keys.item("x") != prefix + "x":
        raise ValueError(f"item keys of {keys} are not a prefix and the id")
    return prefix.encode()


_FLOATS = msgspec.json.Decoder(list[float])
_MINUS_ZERO = re.compile(rb"-0(?![0-9.eE])")


def _integer_minus_zero(doc: bytes) -> bool:
    """Whether JSON reads an integer -0 in `doc`: msgspec makes it 0.0, float() -0.0.
    (Plain searches first, so the pattern runs only when a value has "-0", as "1e-05"
    does; one byte, memchr, before two: the two-byte search took 5 us of a 6 kB doc.)"""
    return b"-" in doc and b"-0" in doc and _MINUS_ZERO.search(doc) is not None


def _floats(values: list[Any]) -> list[float] | None:
    """float() of each of `values` (bytes) as one JSON array, or None where JSON may read
    them otherwise (see _item_columns)."""
    doc = b"[%b]" % b",".join(values)
    if _integer_minus_zero(doc):
        return None
    try:
        parsed = _FLOATS.decode(doc)
    except msgspec.DecodeError:
        return None
    return parsed if len(parsed) == len(values) else None


def _decode(reply: Any) -> Aggregates:
    """learner.aggregates.decode_hash, straight from HGETALL's field, value, ... array."""
    try:
        if isinstance(reply, list):
            fields, values = reply[0::2], reply[1::2]
            if len(fields) == len(values):
                parsed = _floats(values)
                if parsed is not None:
                    return dict(zip(map(bytes.decode, fields), parsed, strict=True))
            it = iter(reply)
            return {field.decode(): float(value) for field, value in zip(it, it, strict=True)}
        if isinstance(reply, dict):  # a RESP3 connection
            return decode_hash(reply)
    except (ValueError, UnicodeDecodeError):
        # Not the learner's hash (a foreign writer?): as for a new user or item.
        return {}
    return {}  # an error reply (WRONGTYPE): nothing known


_FEW_ITEMS = 4
_VALUES = msgspec.json.Decoder(list[float])


def _item_columns(replies: Sequence[Any]) -> ItemColumns:
    """HMGET replies of ITEM_FIELDS, one per item, as columns."""
    width = len(ITEM_FIELDS)
    # For a few items, float() per value costs less than building a document.
    if len(replies) > _FEW_ITEMS and set(map(type, replies)) == {list}:
        # HMGET's nil (a field the item's hash lacks) as 0; a time lacking is put back as
        # None after parsing. (An identity test per value: `None in` and a look-up per
        # value compare or hash each one, 4 us more at 100 items.)
        flat = [b"0" if v is None else v for v in chain.from_iterable(replies)]
        if len(flat) == width * len(replies):
            # Every value in one JSON array, parsed by msgspec, the columns sliced from
            # it: float() of a 17-digit value costs 4 times a short one's, and was a tenth
            # of the request at 100 candidates. msgspec rounds as float() does. What JSON
            # reads otherwise (nan, inf, "1.", a stored "null") fails here, "1,2" changes
            # the count of values, and goes the way below.
            doc = b"[%b]" % b",".join(flat)
            try:
                if _integer_minus_zero(doc):
                    raise msgspec.DecodeError("-0")
                values = _VALUES.decode(doc)
            except msgspec.DecodeError:
                pass
            else:
                if len(values) == len(flat):
                    times = cast(list[float | None], values[0::width])
                    raw_times = [reply[0] for reply in replies]
                    if None in raw_times:
                        # A new item's hash has no time: None, not 0.
                        pairs = zip(raw_times, times, strict=True)
                        times = [None if r is None else t for r, t in pairs]
                    return ItemColumns(times, *(values[j::width] for j in range(1, width)))
    rows = [_item_values(reply, width) for reply in replies]
    return ItemColumns(
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        [row[3] for row in rows],
    )


_Row = tuple[float | None, float, float, float]


def _item_values(reply: Any, width: int) -> _Row:
    """One item's fields; a new item's unless the reply is the learner's hash's."""
    if isinstance(reply, list) and len(reply) == width:
        try:
            time, *counts = (None if v is None else float(v) for v in reply)
            imp, clk, pur = (0.0 if v is None else v for v in counts)
            return (time, imp, clk, pur)
        except (TypeError, ValueError):
            pass
    return (None, 0.0, 0.0, 0.0)


class OnlineAggregates:
    """Reads aggregates for requests; None when Redis cannot answer (the caller degrades)."""

    def __init__(self, pipeline: RespPipeline, health: RedisHealth) -> None:
        self._pipeline = pipeline
        self.health = health

    async def fetch(
        self, keys: ShardKeys, user_id: str, item_ids: Sequence[str]
    ) -> tuple[Aggregates, ItemColumns] | None:
        """(user's aggregates, the items', in order), or None when Redis is unavailable."""
        if not self.health.ok:
            return None
        unique = list(dict.fromkeys(item_ids))
        packed = _hgetall(keys.user(user_id).encode()) + _hmget_items(
            _item_prefix(keys), unique, ITEM_FIELDS
        )
        try:
            replies = await self._pipeline.execute(packed, len(unique) + 1)
        except (RespError, OSError) as exc:
            self.health.down(f"feature look-up failed: {exc}")
            return None
        user = _decode(replies[0])
        items = _item_columns(replies[1:])
        if len(unique) == len(item_ids):
            return user, items
        # A candidate listed twice was fetched once: each occurrence gets its values.
        at = {item_id: j for j, item_id in enumerate(unique)}
        order = [at[item_id] for item_id in item_ids]
        return user, ItemColumns(
            [items.time[j] for j in order],
            [items.impressions[j] for j in order],
            [items.clicks[j] for j in order],
            [items.purchases[j] for j in order],
        )
