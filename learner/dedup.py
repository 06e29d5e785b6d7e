"""Remembering recent event ids, so that a replayed duplicate is learned once.

Ids are kept as 64-bit hashes in arrival order, bounded by count. The state
is published as a Redis list of chunks (one chunk per publish, the new
hashes packed little-endian), so a publish writes only what is new.
"""

import hashlib
from collections import deque

import numpy as np


def event_hash(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


class SeenIds:
    """The last `capacity` event ids, by hash."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._set: set[int] = set()
        self._order: deque[int] = deque()
        self._new: list[int] = []
        self._chunks: deque[int] = deque()
        """Sizes of the chunks stored in Redis, oldest first."""

    def __len__(self) -> int:
        return len(self._order)

    def check_and_add(self, event_id: str) -> bool:
        """True when `event_id` was seen before; otherwise remember it and return False."""
        h = event_hash(event_id)
        if h in self._set:
            return True
        self._set.add(h)
        self._order.append(h)
        self._new.append(h)
        if len(self._order) > self.capacity:
            self._set.discard(self._order.popleft())
        return False

    def delta(self) -> tuple[bytes | None, int]:
        """The chunk to append and how many old chunks may go while `capacity` ids remain."""
        if not self._new:
            return None, 0
        chunk = np.asarray(self._new, dtype="<u8").tobytes()
        sizes = [*self._chunks, len(self._new)]
        total = sum(sizes)
        drop = 0
        while drop < len(sizes) - 1 and total - sizes[drop] >= self.capacity:
            total -= sizes[drop]
            drop += 1
        return chunk, drop

    def published(self, drop: int) -> None:
        self._chunks.append(len(self._new))
        for _ in range(drop):
            self._chunks.popleft()
        self._new = []

    def load(self, chunks: list[bytes]) -> None:
        """Rebuild from the stored chunks: the newest `capacity` hashes."""
        hashes = np.frombuffer(b"".join(chunks), dtype="<u8")[-self.capacity :]
        self._order = deque(int(h) for h in hashes)
        self._set = set(self._order)
        self._chunks = deque(len(c) // 8 for c in chunks)
        self._new = []
