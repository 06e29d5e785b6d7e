"""The label join: impressions wait for their outcome, in event time.

An impression's features (and what each variant predicted for it, which is
what users were served) are taken when it is processed and held until the
attribution window closes behind the event-time watermark. A target outcome
inside the window marks it bought; the label is final only when the window
closes, so every impression closes exactly once, positive or negative, in
impression-time order. What is learned when (at the impression, at the
outcome, at the close) is the delayed-feedback method's choice
(`learner.feedback`), not the join's.

A closed negative leaves a tombstone that keeps its features for another
window: a purchase after the window still teaches the model (a correction)
instead of being dropped. A closed positive keeps only its ids, so a repeated
outcome is recognised and counted rather than mistaken for an unknown one.
Everything here is part of the committed state: `delta()` says what changed
since the last publish.
"""

import dataclasses
import heapq
from collections import Counter
from dataclasses import dataclass, field
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
    "positive",  # closed with its target outcome inside the window
    "negative_window",  # closed with no outcome within the window
    "negative_evicted",  # closed early because the pending buffer was full
    "late_outcome",  # outcome for an impression already closed as negative: a correction
    "duplicate_outcome",  # outcome for an impression already bought
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
    scores: dict[str, float] = field(default_factory=dict)
    """Per variant, the probability it gave when the impression happened: what was served,
    and what the progressive metrics score. Fake-negative methods weight by it too."""
    bought: bool = False
    """The target outcome came inside the window (the label is final at the close)."""
    seq: int = 0
    """Order in which the learner first held it; ties in time break by it, after a restart too."""
    closed: str = ""
    """'' while pending; 'positive' or 'negative' once closed (a tombstone)."""
    closed_at: float = 0.0
    """Watermark when it closed; the tombstone goes one window later."""
    late: bool = False
    """A closed negative whose outcome came after the window (its correction was learned)."""
    bought_at: float = 0.0
    """Event time of the target outcome inside the window (0: none yet). The guards, and the
    "esdfm" method, tell a purchase within their delay from a later one by it, not by when
    the watermark got there, so the label does not depend on how partitions interleave."""
    guarded: bool = False
    """Handed to the guards with the label known `guard_s` after it (`Joins.to_guard`).
    Not stored: an open impression is guarded exactly when the watermark is `guard_s`
    past it, so `load` derives it."""
    sampled: bool = False
    """Learned with the label known `elapsed_s` after it (`Joins.to_sample`, the "esdfm"
    method). Not stored, derived by `load` as `guarded` is."""

    def encode(self) -> bytes:
        return msgspec.json.encode(
            [
                self.user_id,
                self.item_id,
                self.ts,
                msgspec.Raw(self.features),
                self.category,
                self.price,
                self.scores,
                self.bought,
                self.seq,
                self.closed,
                self.closed_at,
                self.late,
                self.bought_at,
            ]
        )

    @classmethod
    def decode(cls, impression_id: str, blob: bytes) -> "Pending":
        user_id, item_id, ts, features, *rest = orjson.loads(blob)
        return cls(impression_id, user_id, item_id, ts, encode_features(features), *rest)

    def bought_by(self, seconds: float) -> bool:
        """Whether the target outcome came within `seconds` of the impression (event time)."""
        return self.bought and self.bought_at - self.ts <= seconds

    def x(self) -> Features:
        """The features, decoded."""
        features: Features = orjson.loads(self.features)
        return features


class Joins:
    """Pending impressions by id, closed in event-time order."""

    def __init__(
        self,
        window_s: float,
        max_pending: int,
        guard_s: float | None = None,
        elapsed_s: float | None = None,
    ) -> None:
        self.window_s = window_s
        self.guard_s = guard_s if guard_s is not None and guard_s < window_s else None
        """Elapsed event time after which an impression goes to the guards with the label
        known by then; None: they get it at the close."""
        self.elapsed_s = elapsed_s if elapsed_s is not None and elapsed_s < window_s else None
        """Elapsed event time after which an impression is learned with the label known by
        then (the "esdfm" method); None: not learned before its close."""
        self.max_pending = max_pending
        self.counts: Counter[str] = Counter()
        self.watermark = float("-inf")
        self._entries: dict[str, Pending] = {}
        self._open = 0
        # (time, seq, id): pending impressions by age; tombstones by the time they may go.
        self._pending_heap: list[tuple[float, int, str]] = []
        self._tomb_heap: list[tuple[float, int, str]] = []
        self._guard_heap: list[tuple[float, int, str]] = []
        self._elapsed_heap: list[tuple[float, int, str]] = []
        self.seq = 0
        self._latest: dict[tuple[str, str], str] = {}
        self._changed: set[str] = set()

    def __len__(self) -> int:
        """Impressions still waiting (tombstones excluded)."""
        return self._open

    def add(self, pending: Pending) -> list[Pending]:
        """Hold an impression; returns those closed early to keep the buffer bounded."""
        if pending.impression_id in self._entries:
            self.counts["duplicate_impression"] += 1
            return []
        self.seq += 1
        pending.seq = self.seq
        self._entries[pending.impression_id] = pending
        self._open += 1
        self._latest[(pending.user_id, pending.item_id)] = pending.impression_id
        heapq.heappush(self._pending_heap, (pending.ts, pending.seq, pending.impression_id))
        key = (pending.ts, pending.seq, pending.impression_id)
        if self.guard_s is not None:
            heapq.heappush(self._guard_heap, key)
        if self.elapsed_s is not None:
            heapq.heappush(self._elapsed_heap, key)
        self._changed.add(pending.impression_id)
        released: list[Pending] = []
        while self._open > self.max_pending:
            released.append(self._close_oldest())
        return released

    def outcome(
        self, user_id: str, item_id: str, impression_id: str | None, at: float
    ) -> tuple[str, Pending | None]:
        """A target outcome at event time `at`: ("bought", impression) inside the window,
        ("late", impression or tombstone) after it (the features are still there to learn
        a correction), else a counted ("duplicate" | "unknown", None).

        Inside or after the window is decided by the outcome's own event time, not by how
        far the watermark has come: the watermark depends on how the partitions were
        read, the label must not. Likewise an outcome two windows after its impression is
        unknown whether or not its tombstone is still there.
        """
        if impression_id is None:
            impression_id = self._latest.get((user_id, item_id))
            if impression_id is None:
                self.counts["unknown_outcome"] += 1
                return "unknown", None
        entry = self._entries.get(impression_id)
        if entry is None or at >= entry.ts + 2 * self.window_s:
            self.counts["unknown_outcome"] += 1
            return "unknown", None
        if entry.bought or entry.late or entry.closed == "positive":
            self.counts["duplicate_outcome"] += 1
            return "duplicate", None
        self._changed.add(entry.impression_id)
        if entry.closed == "negative" or at >= entry.ts + self.window_s:
            self.counts["late_outcome"] += 1
            entry.late = True
            return "late", entry
        entry.bought = True
        entry.bought_at = at
        return "bought", entry

    def drop_features(self, entry: Pending) -> None:
        """A tombstone's features are no longer needed (its correction was learned); an
        impression still open keeps them for its close, which then drops them."""
        if entry.closed:
            entry.features = b"{}"
            self._changed.add(entry.impression_id)

    def item_of(self, impression_id: str | None, user_id: str, item_id: str) -> Pending | None:
        """The impression (pending or tombstone) an outcome refers to, for its item facts."""
        if impression_id is None:
            impression_id = self._latest.get((user_id, item_id))
        return self._entries.get(impression_id) if impression_id is not None else None

    def advance(self, ts: float) -> list[Pending]:
        """Move the watermark to event time `ts`; returns the impressions whose window
        closed, oldest first, each with its final label (`closed`)."""
        if ts <= self.watermark:
            return []
        self.watermark = ts
        released: list[Pending] = []
        horizon = ts - self.window_s
        while self._pending_heap and self._pending_heap[0][0] <= horizon:
            _, _, impression_id = heapq.heappop(self._pending_heap)
            entry = self._entries.get(impression_id)
            if entry is not None and not entry.closed:
                released.append(self._close(entry, "negative_window"))
        while self._tomb_heap and self._tomb_heap[0][0] <= horizon:
            _, _, impression_id = heapq.heappop(self._tomb_heap)
            entry = self._entries.pop(impression_id, None)
            if entry is not None:
                self._forget_latest(entry)
                self._changed.add(impression_id)
        return released

    def to_guard(self) -> list[Pending]:
        """Pending impressions `guard_s` old by the watermark, oldest first, marked as
        handed to the guards. They judge the label known `guard_s` after the impression
        (a purchase by then, by its `bought_at`): a drift shows in minutes instead of a
        whole window later. Closed ones are left to the close."""
        due = self._due(self._guard_heap, self.guard_s)
        for entry in due:
            entry.guarded = True
        return due

    def to_sample(self) -> list[Pending]:
        """Pending impressions `elapsed_s` old by the watermark, oldest first, marked as
        learned with their label so far. Closed ones are left to the close."""
        due = self._due(self._elapsed_heap, self.elapsed_s)
        for entry in due:
            entry.sampled = True
        return due

    def _due(self, heap: list[tuple[float, int, str]], after: float | None) -> list[Pending]:
        """Open impressions at least `after` old by the watermark, popped from `heap`."""
        due: list[Pending] = []
        if after is None:
            return due
        horizon = self.watermark - after
        while heap and heap[0][0] <= horizon:
            _, _, impression_id = heapq.heappop(heap)
            entry = self._entries.get(impression_id)
            if entry is not None and not entry.closed:
                due.append(entry)
        return due

    def _close_oldest(self) -> Pending:
        while True:
            _, _, impression_id = heapq.heappop(self._pending_heap)
            entry = self._entries.get(impression_id)
            if entry is not None and not entry.closed:
                return self._close(entry, "negative_evicted")

    def _close(self, entry: Pending, negative_reason: str) -> Pending:
        """Close `entry` with its final label; the caller learns or scores it from the
        returned object, whose features stay readable until the caller is done."""
        result = "positive" if entry.bought else "negative"
        self.counts["positive" if entry.bought else negative_reason] += 1
        entry.closed = result
        entry.closed_at = max(self.watermark, entry.ts)
        self._open -= 1
        self._changed.add(entry.impression_id)
        heapq.heappush(self._tomb_heap, (entry.closed_at, entry.seq, entry.impression_id))
        if result == "positive" or entry.late:
            # A tombstone that only recognises repeats (a positive, or a negative whose late
            # purchase was learned already) is kept small. The released object is a copy,
            # so the caller still reads the features.
            closed = dataclasses.replace(entry)
            entry.features = b"{}"
            entry.scores = {}
            return closed
        return entry

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
        self._guard_heap = []
        self._elapsed_heap = []
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
                key = (entry.ts, entry.seq, entry.impression_id)
                if self.guard_s is not None:
                    entry.guarded = entry.ts <= watermark - self.guard_s
                    if not entry.guarded:
                        self._guard_heap.append(key)
                if self.elapsed_s is not None:
                    entry.sampled = entry.ts <= watermark - self.elapsed_s
                    if not entry.sampled:
                        self._elapsed_heap.append(key)
        heapq.heapify(self._pending_heap)
        heapq.heapify(self._guard_heap)
        heapq.heapify(self._elapsed_heap)
        heapq.heapify(self._tomb_heap)
        self._changed.clear()
