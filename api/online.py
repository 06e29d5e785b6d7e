"""A request's online aggregates: the user's hash and every candidate item's, one round trip.

One pipeline of HGETALLs on the shared asyncio connection (`api.resp`), decoded as the
learner's `decode_hash` does. While Redis is known to be away (`RedisHealth`), requests
do not try it at all: they are answered from empty aggregates, and the model holder's
polling says when Redis is back.
"""

import functools
import logging
import threading
from collections.abc import Sequence
from typing import Any

from api.resp import RespError, RespPipeline
from learner.aggregates import decode_hash
from learner.keys import ShardKeys

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


def _hgetall_items(prefix: bytes, item_ids: Sequence[str]) -> bytes:
    """HGETALL of each `prefix + item_id`, packed in one pass (keys.item() and a generic
    packer per key cost twice as much, at 100 candidates)."""
    head = b"*2\r\n$7\r\nHGETALL\r\n$"
    n = len(prefix)
    return b"".join(
        [
            b"%b%d\r\n%b%b\r\n" % (head, n + len(raw), prefix, raw)
            for raw in map(str.encode, item_ids)
        ]
    )


@functools.cache
def _item_prefix(keys: ShardKeys) -> bytes:
    """What keys.item(item_id) puts before the id (checked, not assumed)."""
    prefix = keys.item("")
    if keys.item("x") != prefix + "x":
        raise ValueError(f"item keys of {keys} are not a prefix and the id")
    return prefix.encode()


def _decode(reply: Any) -> Aggregates:
    """learner.aggregates.decode_hash, straight from HGETALL's field, value, ... array."""
    try:
        if isinstance(reply, list):
            it = iter(reply)
            return {field.decode(): float(value) for field, value in zip(it, it, strict=True)}
        if isinstance(reply, dict):  # a RESP3 connection
            return decode_hash(reply)
    except (ValueError, UnicodeDecodeError):
        # Not the learner's hash (a foreign writer?): as for a new user or item.
        return {}
    return {}  # an error reply (WRONGTYPE): nothing known


class OnlineAggregates:
    """Reads aggregates for requests; None when Redis cannot answer (the caller degrades)."""

    def __init__(self, pipeline: RespPipeline, health: RedisHealth) -> None:
        self._pipeline = pipeline
        self.health = health

    async def fetch(
        self, keys: ShardKeys, user_id: str, item_ids: Sequence[str]
    ) -> tuple[Aggregates, list[Aggregates]] | None:
        """(user's aggregates, each item's in order), or None when Redis is unavailable."""
        if not self.health.ok:
            return None
        unique = list(dict.fromkeys(item_ids))
        packed = _hgetall(keys.user(user_id).encode()) + _hgetall_items(_item_prefix(keys), unique)
        try:
            replies = await self._pipeline.execute(packed, len(unique) + 1)
        except (RespError, OSError) as exc:
            self.health.down(f"feature look-up failed: {exc}")
            return None
        user = _decode(replies[0])
        if len(unique) == len(item_ids):
            return user, [_decode(reply) for reply in replies[1:]]
        by_item = dict(zip(unique, map(_decode, replies[1:]), strict=True))
        return user, [by_item[item_id] for item_id in item_ids]
