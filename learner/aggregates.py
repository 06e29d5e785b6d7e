"""The learner's write-back cache of the online aggregates kept in Redis.

Only the owning learner writes a shard's aggregates, so what it has read
stays valid while it holds the lease. A batch of records is prefetched in
one pipelined round trip; updates stay in memory (dirty) until the next
atomic publish writes them together with the offsets they reflect.
"""

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import redis

from learner.features import Aggregates


def decode_hash(raw: Mapping[bytes, bytes]) -> dict[str, float]:
    """A Redis hash of floats, as `HashWriter` writes them (read back exactly)."""
    return {k.decode(): float(v) for k, v in raw.items()}


# Redis runs a publish's transaction as one step, and every API replica's feature read
# waits for it: what Redis spends there is paid in the API's tail latency. One HSET per
# hash through redis-py costs Redis least but the learner most (redis-py packs each
# command and parses a QUEUED reply for each). So one script call carries every hash as
# msgpack, each field's value already as text: msgspec formats all the floats of a
# publish in one call, as the shortest text that `float()` reads back as exactly the same
# double. Per 1,000 hashes (Redis, then the learner): 1.9 and 2.5 ms this way; 12.2 and
# 1.8 ms when Lua formatted each double (%.17g); 0.5 and 9.0 ms with an HSET each. A whole
# publish of 1,000 records (bench/publish_cost.py): Redis 13 ms instead of 25, the
# learner 9 ms instead of 6 (docs/api.md, "The p99 while the model learns").
_WRITE_HASHES = """
local rows = cmsgpack.unpack(ARGV[1])
for i, key in ipairs(KEYS) do
  local row = rows[i]
  -- unpack() is bounded by Lua's C stack (8,000 values): write wide hashes in parts.
  for first = 1, #row, 1000 do
    redis.call('HSET', key, unpack(row, first, math.min(first + 999, #row)))
  end
end
return #KEYS
"""
# What msgspec writes for NaN and the infinities (JSON has no text for them).
_NOT_FINITE = "null"


class HashWriter:
    """Writes many hashes of floats in one command, queued on a pipeline or transaction."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_WRITE_HASHES)

    def write(self, pipe: Any, hashes: Mapping[str, Mapping[str, float]]) -> None:
        if not hashes:
            return
        self._script(keys=list(hashes), args=[encode_rows(hashes.values())], client=pipe)


def encode_rows(hashes: Iterable[Mapping[str, float]]) -> bytes:
    """The script's argument: per hash, its field names and values as text, alternating."""
    fields = list(hashes)
    values = [value for row in fields for value in row.values()]
    texts = msgspec.json.encode(values).decode()[1:-1].split(",") if values else []
    if _NOT_FINITE in texts:
        texts = [
            repr(float(v)) if t == _NOT_FINITE else t for t, v in zip(texts, values, strict=True)
        ]
    rows: list[list[str]] = []
    at = 0
    for row in fields:
        n = len(row)
        flat: list[str] = [""] * (2 * n)
        flat[0::2] = row
        flat[1::2] = texts[at : at + n]
        at += n
        rows.append(flat)
    return msgspec.msgpack.encode(rows)


class AggregateCache:
    """Aggregates by Redis key: prefetched, updated in place, flushed at publish."""

    def __init__(self, client: redis.Redis, capacity: int = 20_000) -> None:
        self._client = client
        self._capacity = capacity
        self._entries: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._dirty: set[str] = set()

    def prefetch(self, keys: Iterable[str]) -> None:
        """Load every key not yet cached, in one round trip; mark all of them recently used.

        Recency is kept per batch, here, rather than on every `get`: a batch's keys
        then outlive any eviction while it is processed, and the per-event path
        does no reordering.
        """
        missing = []
        entries = self._entries
        for key in dict.fromkeys(keys):
            if key in entries:
                entries.move_to_end(key)
            else:
                missing.append(key)
        if not missing:
            return
        pipe = self._client.pipeline(transaction=False)
        for key in missing:
            pipe.hgetall(key)
        for key, raw in zip(missing, pipe.execute(), strict=True):
            self._entries[key] = decode_hash(raw)
        self._evict()

    def get(self, key: str) -> Aggregates:
        """The aggregates of `key`, for reading and updating; mark_dirty after an update."""
        entry = self._entries.get(key)
        if entry is None:
            self.prefetch([key])
            entry = self._entries[key]
        return entry

    def mark_dirty(self, key: str) -> None:
        self._dirty.add(key)

    def dirty(self) -> dict[str, dict[str, float]]:
        """What changed since the last publish (the caller writes it, then calls `flushed`)."""
        return {key: self._entries[key] for key in self._dirty}

    def flushed(self) -> None:
        self._dirty.clear()
        self._evict()

    def clear(self) -> None:
        """Forget everything, e.g. after losing the lease or a restore."""
        self._entries.clear()
        self._dirty.clear()

    def _evict(self) -> None:
        # Dirty entries must survive until they are published.
        while len(self._entries) > self._capacity:
            key, _ = next(iter(self._entries.items()))
            if key in self._dirty:
                break
            self._entries.popitem(last=False)
