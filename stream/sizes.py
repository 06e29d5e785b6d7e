"""What a record costs on the wire, and cutting a copy of one down to fit a topic.

Kafka holds a topic's `max.message.bytes` against a whole record batch (format v2): a
61-byte batch header, then each record as zigzag varints and bytes. The side topics'
producer sends uncompressed batches no larger than the smallest side topic's limit, and a
record too large to share a batch goes alone; so a record fits its topic when its own
one-record batch does, and `batch_size` says so to the byte (the tests hold it to what
the broker accepts and refuses).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

Header = tuple[str, bytes]

BATCH_OVERHEAD: Final = 61
"""Bytes of a v2 record batch's header, before its first record."""

KEY_KEPT: Final = 1024
"""Bytes of an oversized key kept when the value needs the room (a user id is far less)."""


def varint_size(n: int) -> int:
    """Bytes of `n` as a zigzag varint, as Kafka encodes record fields."""
    zigzag = (n << 1) ^ (n >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _field(data: bytes | None) -> int:
    return varint_size(-1) if data is None else varint_size(len(data)) + len(data)


def batch_size(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """Bytes of a batch holding just this record: what the broker checks against the limit."""
    body = 1 + varint_size(0) + varint_size(0)  # attributes, timestamp and offset deltas
    body += _field(key) + _field(value) + varint_size(len(headers))
    for name, content in headers:
        body += _field(name.encode()) + _field(content)
    return BATCH_OVERHEAD + varint_size(body) + body


@dataclass(frozen=True, slots=True)
class Fitted:
    """A copy of a record, cut where it had to be to fit a limit."""

    key: bytes | None
    value: bytes | None
    headers: list[Header]
    cut: tuple[str, ...] = ()
    """What was cut: "key", "value"; empty for a whole copy."""

    @property
    def size(self) -> int:
        return batch_size(self.key, self.value, self.headers)


def fit(key: bytes | None, value: bytes | None, headers: list[Header], limit: int) -> Fitted:
    """The record whole if it fits `limit`, else cut to fit, saying so in its headers.

    The value is cut before the key, unless the key is what is oversized (then it keeps
    `KEY_KEPT` bytes, or what the value leaves). A cut copy carries `truncated` (the parts
    cut) and, for a cut key, `original_key_size`. Should not even the headers fit, the
    smallest copy comes back and the broker's refusal says the rest.
    """
    whole = Fitted(key, value, headers)
    # Every varint at its widest: a bound that spares the exact count for nearly every record.
    most = BATCH_OVERHEAD + 23 + len(key or b"") + len(value or b"")
    if most + sum(len(name) * 4 + len(content) + 10 for name, content in headers) <= limit:
        return whole
    if whole.size <= limit:
        return whole
    k = len(key) if key is not None else 0
    if value is None and not k:
        return whole  # only headers: nothing of the record to cut
    if k > KEY_KEPT or value is None:
        # The key is (part of) the problem: cut it, keeping the value whole if that fits.
        marked = _marked(headers, ("key",), k)
        kept = _longest(k, lambda n: batch_size(_cut(key, n), value, marked), limit)
        if kept >= min(k, KEY_KEPT) or value is None:
            return Fitted(_cut(key, max(kept, 0)), value, marked, ("key",))
    key_cut = k > KEY_KEPT
    key = _cut(key, KEY_KEPT) if key_cut else key
    parts = ("key", "value") if key_cut else ("value",)
    marked = _marked(headers, parts, k)
    v = len(value) if value is not None else 0
    kept = _longest(v, lambda n: batch_size(key, _cut(value, n), marked), limit)
    if kept >= 0:
        return Fitted(key, _cut(value, kept), marked, parts)
    # Not even an empty value fits beside the key's first KEY_KEPT bytes: cut the key further.
    marked = _marked(headers, ("key", "value"), k)
    kept = _longest(len(key or b""), lambda n: batch_size(_cut(key, n), b"", marked), limit)
    return Fitted(_cut(key, max(kept, 0)), b"", marked, ("key", "value"))


def _marked(headers: list[Header], parts: tuple[str, ...], key_size: int) -> list[Header]:
    marks = [("truncated", ",".join(parts).encode())]
    if "key" in parts:
        marks.append(("original_key_size", str(key_size).encode()))
    return [*headers, *marks]


def _cut(data: bytes | None, n: int) -> bytes | None:
    return data[:n] if data is not None else None


def _longest(most: int, size_of: Callable[[int], int], limit: int) -> int:
    """The largest n in [0, most] with size_of(n) <= limit (size_of grows with n); -1 if none."""
    if size_of(0) > limit:
        return -1
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if size_of(middle) <= limit:
            low = middle
        else:
            high = middle - 1
    return low
