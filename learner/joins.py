"""The label join: impressions wait for their outcome, in event time.

An impression's features are taken when it is processed and held until the
target outcome arrives (a positive) or the attribution window closes behind
the event-time watermark (a negative). Closed impressions leave a tombstone
for another window, so that a late or repeated outcome is recognised and
counted rather than mistaken for an unknown one. Everything here is part of
the committed state: `delta()` says what changed since the last publish.
"""

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import Final

import msgspec
import orjson

from learner.features import Features


def encode_features(x: Features) -> bytes:
    """Features as compact JSON bytes, sized exactly.

    Not orjson.dumps: its bytes keep the whole write buffer (about 8 KB for a
    400-byte feature dict), which multiplied by every held impression was most of
    the learner's resident memory.
    """
    return msgspec.json.encode(x)


JOIN_COUNTERS: Final = (
    "positive",  # target outcome matched a pending impression
    "negative_window",  # no outcome within the window
    "negative_evicted",  # closed early because the pending buffer was full
    "late_outcome",  # outcome for an impression already closed as negative
    "duplicate_outcome",  # outcome for an impression already learned as positive
    "unknown_outcome",  # outcome for an impression never seen (or long forgotten)
    "duplicate_impression",
)


@dataclass(slots=True)
class Pending:
    """An impression waiting for its outcome, or (closed) the tombstone it leaves."""

    impression_id: str
    user_id: str
    item_id: str
    ts: float
    features: bytes
    """The features as JSON: one object instead of a dict of many, which keeps tens of
    thousands of pending impressions cheap for the garbage collector; decoded once, when
    the example is learned."""
    category: str
    price: float
    seq: int = 0
    """Order in which the learner first held it; ties in time break by it, after a restart too."""
    closed: str = ""
    """'' while pending; 'positive' or 'negative' once closed (a tombstone)."""
    closed_at: float = 0.0
    """Watermark when it closed; the tombstone goes one window later."""

    def encode(self) -> bytes:
        return msgspec.json.encode(
            [
                self.user_id,
                self.item_id,
                self.ts,
                msgspec.Raw(self.features),
                self.category,
                self.price,
                self.seq,
                self.closed,
                self.closed_at,
            ]
        )

    @classmethod
    def decode(cls, impression_id: str, blob: bytes) -> "Pending":
        user_id, item_id, ts, features, *rest = orjson.loads(blob)
        return cls(impression_id, user_id, item_id, ts, encode_features(features), *rest)


@dataclass(frozen=True, slots=True)
class Example:
    """A training example the join released."""

    features: Features
    label: bool
    ts: float
    impression_id: str


class Joins:
    """Pending impressions by id, closed in event-time order."""

    def __init__(self, window_s: float, max_pending: int) -> None:
        self.window_s = window_s
        self.max_pending = max_pending
        self.counts: Counter[str] = Counter()
        self.watermark = float("-inf")
        self._entries: dict[str, Pending] = {}
        self._open = 0
        # (time, seq, id): pending impressions by age; tombstones by the time they may go.
        self._pending_heap: list[tuple[float, int, str]] = []
        self._tomb_heap: list[tuple[float, int, str]] = []
        self.seq = 0
        self._latest: dict[tuple[str, str], str] = {}
        self._changed: set[str] = set()

    def __len__(self) -> int:
        """Impressions still waiting (tombstones excluded)."""
        return self._open

    def add(self, pending: Pending) -> list[Example]:
        """Hold an impression; returns negatives closed to keep the buffer bounded."""
        if pending.impression_id in self._entries:
            self.counts["duplicate_impression"] += 1
            return []
        self.seq += 1
        pending.seq = self.seq
        self._entries[pending.impression_id] = pending
        self._open += 1
        self._latest[(pending.user_id, pending.item_id)] = pending.impression_id
        heapq.heappush(self._pending_heap, (pending.ts, pending.seq, pending.impression_id))
        self._changed.add(pending.impression_id)
        released: list[Example] = []
        while self._open > self.max_pending:
            released.append(self._close_oldest("negative_evicted"))
        return released

    def outcome(self, user_id: str, item_id: str, impression_id: str | None) -> Example | None:
        """A target outcome: the positive example it completes, if any (else it is counted)."""
        if impression_id is None:
            impression_id = self._latest.get((user_id, item_id))
            if impression_id is None:
                self.counts["unknown_outcome"] += 1
                return None
        entry = self._entries.get(impression_id)
        if entry is None:
            self.counts["unknown_outcome"] += 1
            return None
        if entry.closed == "negative":
            self.counts["late_outcome"] += 1
            return None
        if entry.closed == "positive":
            self.counts["duplicate_outcome"] += 1
            return None
        self.counts["positive"] += 1
        return self._close(entry, "positive")

    def item_of(self, impression_id: str | None, user_id: str, item_id: str) -> Pending | None:
        """The impression (pending or tombstone) an outcome refers to, for its item facts."""
        if impression_id is None:
            impression_id = self._latest.get((user_id, item_id))
        return self._entries.get(impression_id) if impression_id is not None else None

    def advance(self, ts: float) -> list[Example]:
        """Move the watermark to event time `ts`; returns the negatives whose window closed."""
        if ts <= self.watermark:
            return []
        self.watermark = ts
        released: list[Example] = []
        horizon = ts - self.window_s
        while self._pending_heap and self._pending_heap[0][0] <= horizon:
            _, _, impression_id = heapq.heappop(self._pending_heap)
            entry = self._entries.get(impression_id)
            if entry is not None and not entry.closed:
                self.counts["negative_window"] += 1
                released.append(self._close(entry, "negative"))
        while self._tomb_heap and self._tomb_heap[0][0] <= horizon:
            _, _, impression_id = heapq.heappop(self._tomb_heap)
            entry = self._entries.pop(impression_id, None)
            if entry is not None:
                self._forget_latest(entry)
                self._changed.add(impression_id)
        return released

    def _close_oldest(self, reason: str) -> Example:
        while True:
            _, _, impression_id = heapq.heappop(self._pending_heap)
            entry = self._entries.get(impression_id)
            if entry is not None and not entry.closed:
                self.counts[reason] += 1
                return self._close(entry, "negative")

    def _close(self, entry: Pending, result: str) -> Example:
        # A positive's slot in the pending heap is skipped lazily when it is popped.
        entry.closed = result
        entry.closed_at = max(self.watermark, entry.ts)
        self._open -= 1
        self._changed.add(entry.impression_id)
        heapq.heappush(self._tomb_heap, (entry.closed_at, entry.seq, entry.impression_id))
        features: Features = orjson.loads(entry.features)
        example = Example(features, result == "positive", entry.ts, entry.impression_id)
        # Features are no longer needed once learned; tombstones stay small.
        entry.features = b"{}"
        return example

    def _forget_latest(self, entry: Pending) -> None:
        key = (entry.user_id, entry.item_id)
        if self._latest.get(key) == entry.impression_id:
            del self._latest[key]

    def delta(self) -> tuple[dict[str, bytes], list[str]]:
        """Entries to write and ids to delete since the last publish; then call `published`."""
        upserts: dict[str, bytes] = {}
        deletes: list[str] = []
        for impression_id in self._changed:
            entry = self._entries.get(impression_id)
            if entry is None:
                deletes.append(impression_id)
            else:
                upserts[impression_id] = entry.encode()
        return upserts, deletes

    def published(self) -> None:
        self._changed.clear()

    def load(self, entries: dict[str, Pending], seq: int, watermark: float) -> None:
        """Rebuild from the committed entries, in the order they were first held.

        Heap keys carry the persisted sequence numbers, so a restored learner
        closes entries in exactly the order one that never stopped would.
        """
        self._entries = {}
        self._pending_heap = []
        self._tomb_heap = []
        self._latest = {}
        self._open = 0
        self.seq = seq
        self.watermark = watermark
        for entry in sorted(entries.values(), key=lambda e: e.seq):
            self._entries[entry.impression_id] = entry
            self._latest[(entry.user_id, entry.item_id)] = entry.impression_id
            if entry.closed:
                self._tomb_heap.append((entry.closed_at, entry.seq, entry.impression_id))
            else:
                self._open += 1
                self._pending_heap.append((entry.ts, entry.seq, entry.impression_id))
        heapq.heapify(self._pending_heap)
        heapq.heapify(self._tomb_heap)
        self._changed.clear()
