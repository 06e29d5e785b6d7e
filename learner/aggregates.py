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


# One HSET per hash through redis-py cost the learner more than learning did at a
# publish of a few thousand hashes: formatting every float, packing every command and
# parsing a QUEUED reply for each. One script call carries them all as a msgpack array
# (one map per key, in KEYS order); Redis formats each double with %.17g, which reads
# back (`float()`) as exactly the same double.
_WRITE_HASHES = """
local rows = cmsgpack.unpack(ARGV[1])
for i, key in ipairs(KEYS) do
  local args = {}
  for name, value in pairs(rows[i]) do
    args[#args + 1] = name
    args[#args + 1] = string.format('%.17g', value)
    -- unpack() is bounded by Lua's C stack (8,000 values): write wide hashes in parts.
    if #args == 1000 then
      redis.call('HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('HSET', key, unpack(args))
  end
end
return #KEYS
"""


class HashWriter:
    """Writes many hashes of floats in one command, queued on a pipeline or transaction."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_WRITE_HASHES)

    def write(self, pipe: Any, hashes: Mapping[str, Mapping[str, float]]) -> None:
        if hashes:
            rows = msgspec.msgpack.encode(list(hashes.values()))
            self._script(keys=list(hashes), args=[rows], client=pipe)


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
