"""A request's online aggregates: the user's hash and every candidate item's, one round trip.

The commands are packed by hand and sent on one pooled redis-py connection, then read
back reply by reply. redis-py's own pipeline costs ~470 us for 101 HGETALLs (it builds a
command object, a packing pass and a response callback per command); this costs ~270 us
for the same bytes on the wire. redis-py still owns the connection: URL, AUTH, SELECT,
TLS, RESP2 or RESP3, timeouts.

While Redis is known to be away (`RedisHealth`), requests do not try it at all: they are
answered from empty aggregates, and the model holder's polling says when Redis is back.
"""

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from learner.aggregates import decode_hash
from learner.keys import ShardKeys

log = logging.getLogger("headrace.api")

Aggregates = dict[str, float]
_EMPTY: Mapping[bytes, bytes] = {}


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


def _hgetall(key: str) -> bytes:
    raw = key.encode()
    return b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b\r\n" % (len(raw), raw)


def _as_mapping(reply: Any) -> Mapping[bytes, bytes]:
    if isinstance(reply, dict):  # RESP3
        return reply
    if isinstance(reply, list):  # RESP2: field, value, field, value ...
        it = iter(reply)
        return dict(zip(it, it, strict=True))
    return _EMPTY


class OnlineAggregates:
    """Reads aggregates for requests; None when Redis cannot answer (the caller degrades)."""

    def __init__(self, pool: redis.ConnectionPool, health: RedisHealth) -> None:
        self._pool = pool
        self.health = health

    def fetch(
        self, keys: ShardKeys, user_id: str, item_ids: Sequence[str]
    ) -> tuple[Aggregates, list[Aggregates]] | None:
        """(user's aggregates, each item's in order), or None when Redis is unavailable."""
        if not self.health.ok:
            return None
        unique = list(dict.fromkeys(item_ids))
        names = [keys.user(user_id), *(keys.item(item_id) for item_id in unique)]
        packed = b"".join([_hgetall(name) for name in names])
        try:
            replies = self._roundtrip(packed, len(names))
        except (redis.RedisError, OSError) as exc:
            self.health.down(f"feature look-up failed: {type(exc).__name__}: {exc}")
            return None
        decoded = [self._decode(reply) for reply in replies]
        by_item = dict(zip(unique, decoded[1:], strict=True))
        return decoded[0], [by_item[item_id] for item_id in item_ids]

    def _roundtrip(self, packed: bytes, n: int) -> list[Any]:
        conn = self._pool.get_connection()
        try:
            conn.send_packed_command([packed], check_health=False)
            read = conn.read_response
            replies: list[Any] = []
            for _ in range(n):
                try:
                    replies.append(read())
                except redis.ResponseError:
                    # One key that is not a hash (WRONGTYPE): that key only is empty.
                    replies.append(None)
            return replies
        except BaseException:
            # Replies may be left unread on the socket: this connection cannot be reused.
            conn.disconnect()
            raise
        finally:
            self._pool.release(conn)

    @staticmethod
    def _decode(reply: Any) -> Aggregates:
        try:
            return decode_hash(_as_mapping(reply))
        except (ValueError, UnicodeDecodeError):
            # Not the learner's hash (a foreign writer?): treat it as a new user or item.
            return {}
