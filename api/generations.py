"""A per-worker cache whose entries are never older than a bound, and never of another model.

Entries live in generations, one per shard: a generation starts empty, belongs to one
model state (epoch, version) and lasts `max_age_s`. An entry goes in only if the Redis
read it comes from was sent after its generation started, so every entry is at most
as old as its generation; a generation past `max_age_s`, or of another state than the
one a request is served with, is dropped whole. That bounds staleness without a time
check per entry (per-item checks cost as much as the Redis parsing they save), at the
price of a cold cache once every `max_age_s`.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

from learner.epoch import Stamp

K = TypeVar("K")
V = TypeVar("V")


class Generation(Generic[K, V]):
    __slots__ = ("entries", "since", "size", "stamp")

    def __init__(self, stamp: Stamp, since: float) -> None:
        self.stamp = stamp
        self.since = since
        """When it started (the clock's time): every entry was read after it."""
        self.entries: dict[K, V] = {}
        self.size = 0
        """What the entries weigh, for caches that count more than one per entry."""


class Generations(Generic[K, V]):
    """The current generation of each shard."""

    def __init__(self, max_age_s: float, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.clock = clock
        self._current: dict[str, Generation[K, V]] = {}

    def current(self, shard: str, stamp: Stamp) -> Generation[K, V]:
        """The shard's generation for `stamp`, a new empty one if the last is too old."""
        now = self.clock()
        found = self._current.get(shard)
        if found is None or found.stamp != stamp or now - found.since > self.max_age_s:
            found = self._current[shard] = Generation(stamp, now)
        return found

    def admit(self, generation: Generation[K, V], read_at: float) -> dict[K, V] | None:
        """Where to put what a Redis read sent at `read_at` found, or None: the read is
        older than the generation, or the generation is full. (A generation replaced
        meanwhile may still take it: nobody reads that one any more.)"""
        if read_at < generation.since or len(generation.entries) >= self.max_entries:
            return None
        return generation.entries
