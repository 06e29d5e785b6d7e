"""The metrics history: a compact point per publish (at most one every few seconds).

A point is what the dashboard charts: progressive log loss and ROC AUC per variant,
examples learned and records read per second, consumer lag, quarantined events per
rule. It is appended to a capped Redis stream in the same transaction as the state it
describes (learner/state.py), so the history survives restarts of the API and the
learner, and a point exists exactly when its version is committed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from learner.counters import QUARANTINED, by_prefix
from learner.layout import ShardKeys


@dataclass(slots=True)
class _Mark:
    at: float
    learned: int
    read: int


class HistoryRecorder:
    """Decides when the next publish carries a point, and computes its rates."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: _Mark | None = None
        self._proposed: _Mark | None = None

    def point(
        self,
        now: float,
        learned: int,
        read: int,
        variants: Mapping[str, Mapping[str, Any]],
        counts: Mapping[str, int],
        lag: int | None,
    ) -> dict[str, Any] | None:
        """The point for a publish at wall-clock `now`, or None when the last one is too recent.

        `learned` counts examples learned, `read` records read (the sum of the offsets), both
        since the shard began; `variants` maps a variant to its n_learned and metrics report.
        """
        last = self._last
        if last is not None and now - last.at < self.every_s:
            return None
        dt = now - last.at if last is not None else 0.0
        self._proposed = _Mark(now, learned, read)
        return {
            "ts": now,
            "n_learned": learned,
            "learned_per_s": (learned - last.learned) / dt if last and dt > 0 else None,
            "events_per_s": (read - last.read) / dt if last and dt > 0 else None,
            "lag": lag,
            "quarantined": by_prefix(counts, QUARANTINED),
            "variants": {
                name: {
                    "n_learned": facts["n_learned"],
                    "log_loss": facts["metrics"].get("log_loss"),
                    "roc_auc": facts["metrics"].get("roc_auc"),
                    "rolling_log_loss": facts["metrics"].get("rolling_log_loss"),
                    "rolling_roc_auc": facts["metrics"].get("rolling_roc_auc"),
                }
                for name, facts in variants.items()
            },
        }

    def published(self, carried_point: bool) -> None:
        """The publish is committed: its point (if any) is the base of the next rates."""
        if carried_point and self._proposed is not None:
            self._last = self._proposed
        self._proposed = None


def append(pipe: Any, keys: ShardKeys, point: dict[str, Any], cap: int) -> None:
    """Queue one point on a (transactional) pipeline; the stream keeps about `cap` points."""
    pipe.xadd(keys.history, {"point": orjson.dumps(point)}, maxlen=cap, approximate=True)


_MAX_PART = 2**64 - 1


def parse_id(text: str) -> tuple[int, int]:
    """A stream entry id `<ms>-<seq>`; raises ValueError for anything else or out of range."""
    ms, dash, seq = text.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit():
        raise ValueError(f"not a point id (<ms>-<seq>): {text!r}")
    parts = int(ms), int(seq)
    if max(parts) > _MAX_PART:
        raise ValueError(f"point id out of range: {text!r}")
    return parts


def read(
    client: redis.Redis, keys: ShardKeys, after: tuple[int, int] | None, limit: int
) -> list[tuple[str, dict[str, Any]]]:
    """Points after entry id `after` (oldest first), or the newest `limit` when None."""
    if after is None:
        entries = list(reversed(client.xrevrange(keys.history, count=limit)))
    else:
        ms, seq = after
        if seq < _MAX_PART:
            start = f"{ms}-{seq + 1}"
        elif ms < _MAX_PART:
            start = f"{ms + 1}-0"
        else:
            return []
        entries = client.xrange(keys.history, min=start, count=limit)
    return [(entry_id.decode(), orjson.loads(fields[b"point"])) for entry_id, fields in entries]
