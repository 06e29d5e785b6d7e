"""The soak benchmark's bookkeeping, as pure functions: no Kafka, Redis or processes here.

- Which events were lost or learned twice, by event id and by the learner's own counters
  (`audit_ids`, `audit_counts`).
- How stale the model behind each /predict answer was (`VersionTimeline.stale_s`).
- Each fault's window of requests: outcomes, staleness, the longest wait for a new version
  (`window_stats`).
- Following the learner's list of seen event-id chunks in Redis as it grows and is trimmed
  (`new_chunks`).
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final

import numpy as np
import numpy.typing as npt

from bench.load_client import CLIENT_ERROR, OK, SERVER_ERROR, TIMEOUT, TRANSPORT_ERROR, Outcome

Hashes = npt.NDArray[np.uint64]


# -- events: lost and learned twice ---------------------------------------------------------


@dataclass(frozen=True)
class IdAudit:
    """The event ids the simulator had acknowledged against those the learner committed."""

    expected: int
    committed: int
    lost: int
    """Expected ids the committed state never took in."""
    twice: int
    """Extra occurrences of an id in the committed sequence (taken in more than once)."""
    unexpected: int
    """Committed ids nobody produced (a hash collision, or a stray producer)."""


def audit_ids(expected: Hashes, committed: Hashes) -> IdAudit:
    """Compare the 64-bit hashes of the produced event ids with the sequence the learner
    committed (learner/dedup.py writes one hash per event it takes in, duplicates excepted)."""
    unique, counts = np.unique(committed, return_counts=True)
    wanted = np.unique(expected)
    found = np.isin(wanted, unique, assume_unique=True)
    return IdAudit(
        expected=len(expected),
        committed=len(committed),
        lost=int(len(wanted) - found.sum()),
        twice=int((counts - 1).sum()),
        unexpected=int((~np.isin(unique, wanted, assume_unique=True)).sum()),
    )


@dataclass(frozen=True)
class CountRow:
    name: str
    expected: int
    counted: int

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.counted)

    @property
    def twice(self) -> int:
        return max(0, self.counted - self.expected)


def audit_counts(
    produced: Mapping[str, int],
    rejections: Mapping[str, int],
    counts: Mapping[str, int],
) -> list[CountRow]:
    """Per event type and per rejection reason: what the simulator produced against what
    the learner's committed counters say it consumed (`event_<type>`, `rejected_<reason>`)."""
    rows = [
        CountRow(f"event_{kind}", n, int(counts.get(f"event_{kind}", 0)))
        for kind, n in sorted(produced.items())
        if kind != "malformed"
    ]
    reasons = set(rejections) | {k[len("rejected_") :] for k in counts if k.startswith("rejected_")}
    rows += [
        CountRow(f"rejected_{r}", rejections.get(r, 0), int(counts.get(f"rejected_{r}", 0)))
        for r in sorted(reasons)
    ]
    return rows


def joins_balance(counts: Mapping[str, int], joins: Mapping[str, int]) -> int:
    """Impressions taken in that the join neither settled (learned as a positive or a
    negative) nor holds pending, duplicates apart: the impressions the fraud guard
    quarantined, so between 0 and the quarantined events. Below 0, an impression was
    learned twice; above the quarantined events, one was lost."""
    taken = counts.get("event_impression", 0) - joins.get("duplicate_impression", 0)
    settled = sum(
        n for name, n in joins.items() if name == "positive" or name.startswith("negative")
    )
    return int(taken - settled - joins.get("pending", 0))


def new_chunks(known: bytes | None, fetched: Sequence[bytes]) -> list[bytes] | None:
    """The chunks of `fetched` (the list's newest ones, oldest first) after `known`, the last
    chunk already taken; all of them when nothing was taken yet.

    None when `known` is not among them: fetch more of the list, or, if that was all of it,
    the committed history no longer contains what was followed (a restore, a lost write).
    Chunks are told apart by their bytes: each holds the hashes of different events."""
    if known is None:
        return list(fetched)
    for i in range(len(fetched) - 1, -1, -1):
        if fetched[i] == known:
            return list(fetched[i + 1 :])
    return None


# -- staleness of the served model ----------------------------------------------------------


@dataclass
class VersionTimeline:
    """The shard's version in Redis over time, as change points: `versions[i]` held from
    `times[i]` until `times[i + 1]`."""

    times: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)

    def observe(self, t: float, version: int) -> None:
        if not self.versions or self.versions[-1] != version:
            self.times.append(t)
            self.versions.append(version)

    def stale_s(self, sent: float, done: float, version: int) -> float:
        """How long the state of `version`, which answered a request between `sent` and
        `done`, had no longer been the one in Redis when the request was sent.

        0 when Redis held `version` at some moment of the request (the API read its model
        then), or when `version` is newer than anything seen yet (published, not yet
        polled). A version Redis held before is stale since Redis left it, also when Redis
        went back to an older one (its state is gone); an older one never seen, since the
        first newer one appeared."""
        first = max(0, int(np.searchsorted(self.times, sent, side="right")) - 1)
        last = int(np.searchsorted(self.times, done, side="right")) - 1
        if last < 0 or version in self.versions[first : last + 1]:
            return 0.0
        if version > max(self.versions[: last + 1]):
            return 0.0
        for j in range(first - 1, -1, -1):
            if self.versions[j] == version:
                return max(0.0, sent - self.times[j + 1])
        newer = next(j for j in range(last + 1) if self.versions[j] > version)
        return max(0.0, sent - self.times[newer])

    def longest_gap_s(self, start: float, end: float) -> float:
        """The longest time within [start, end) without a new version being published."""
        points = [start, *(t for t in self.times if start < t < end), end]
        return max(b - a for a, b in pairwise(points))


# -- per-fault windows ------------------------------------------------------------------------

STALE_ALERT_S: Final = 1.0
"""Answers older than this count as served from a stale model in the report."""


@dataclass
class WindowStats:
    """What the storefront saw in one window: from a fault's start to the next one's."""

    name: str
    start: float
    end: float
    outcomes: Counter[str] = field(default_factory=Counter)
    failovers: int = 0
    degraded: int = 0
    p99_ms: float = 0.0
    max_stale_s: float = 0.0
    stale_answers: int = 0
    """Answers from a model more than STALE_ALERT_S behind the one in Redis."""
    longest_version_gap_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())


def window_stats(
    windows: Sequence[tuple[str, float, float]],
    outcomes: Sequence[Outcome],
    timeline: VersionTimeline,
) -> list[WindowStats]:
    """Each request in the window its sending time falls in; windows are [start, end)."""
    stats = [WindowStats(name, start, end) for name, start, end in windows]
    latencies: list[list[float]] = [[] for _ in stats]
    starts = [s.start for s in stats]
    for o in outcomes:
        i = int(np.searchsorted(starts, o.sent_at, side="right")) - 1
        if i < 0 or o.sent_at >= stats[i].end:
            continue
        w = stats[i]
        w.outcomes[o.outcome] += 1
        w.failovers += o.failover
        if o.status:
            latencies[i].append(o.latency_s)
        if o.outcome == OK:
            w.degraded += o.degraded
            stale = timeline.stale_s(o.sent_at, o.sent_at + o.latency_s, o.version)
            w.max_stale_s = max(w.max_stale_s, stale)
            w.stale_answers += stale > STALE_ALERT_S
    for w, found in zip(stats, latencies, strict=True):
        if found:
            w.p99_ms = float(np.percentile(found, 99)) * 1000
        w.longest_version_gap_s = timeline.longest_gap_s(w.start, w.end)
    return stats


OUTCOME_COLUMNS: Final = (OK, SERVER_ERROR, TIMEOUT, TRANSPORT_ERROR, CLIENT_ERROR)
