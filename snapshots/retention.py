"""Which snapshots to keep: a pure rule over a listing, and applying it to a store.

Per model (a busy shard must not evict a quiet one's history), keep:
- the newest `keep_last`;
- every last-known-good snapshot (or its newest `keep_lkg`, when set);
- the newest snapshot of each UTC calendar day among the last `keep_daily_days`
  days, today included.
Everything else goes. Time is the signed `created_at`, never the file's mtime,
which a copy or a restore from backup rewrites.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from snapshots.errors import SnapshotNotFoundError
from snapshots.manifest import SnapshotInfo
from snapshots.settings import SnapshotSettings
from snapshots.store import SnapshotStore


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_last: int = 10
    keep_daily_days: int = 7
    keep_lkg: int | None = None

    @classmethod
    def from_settings(cls, settings: SnapshotSettings) -> "RetentionPolicy":
        return cls(
            settings.snapshot_keep_last,
            settings.snapshot_keep_daily_days,
            settings.snapshot_keep_lkg,
        )


def _newest_first(info: SnapshotInfo) -> tuple[datetime, int, str]:
    return info.created_at, info.header.version, info.snapshot_id


def _keep(infos: list[SnapshotInfo], policy: RetentionPolicy, today: datetime) -> set[str]:
    ordered = sorted(infos, key=_newest_first, reverse=True)
    keep = {i.snapshot_id for i in ordered[: policy.keep_last]}
    good = [i for i in ordered if i.last_known_good]
    keep.update(i.snapshot_id for i in good[: policy.keep_lkg])
    days_seen = set()
    for info in ordered:
        day = info.created_at.astimezone(UTC).date()
        if 0 <= (today.date() - day).days < policy.keep_daily_days and day not in days_seen:
            days_seen.add(day)
            keep.add(info.snapshot_id)
    return keep


def to_delete(
    infos: Iterable[SnapshotInfo],
    keep_last: int,
    keep_daily_days: int,
    now: datetime,
    keep_lkg: int | None = None,
) -> list[str]:
    """Ids of the snapshots the policy does not keep, sorted."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if keep_last < 1:
        raise ValueError("keep_last must be 1 or more: retention never deletes the newest")
    policy = RetentionPolicy(keep_last, keep_daily_days, keep_lkg)
    by_model: defaultdict[str, list[SnapshotInfo]] = defaultdict(list)
    for info in infos:
        by_model[info.model].append(info)
    doomed: list[str] = []
    for group in by_model.values():
        keep = _keep(group, policy, now.astimezone(UTC))
        doomed.extend(i.snapshot_id for i in group if i.snapshot_id not in keep)
    return sorted(doomed)


def apply(store: SnapshotStore, policy: RetentionPolicy, now: datetime | None = None) -> list[str]:
    """Delete what the policy does not keep; the ids actually deleted."""
    doomed = to_delete(
        store.list(),
        policy.keep_last,
        policy.keep_daily_days,
        now or datetime.now(UTC),
        policy.keep_lkg,
    )
    deleted = []
    for snapshot_id in doomed:
        try:
            store.delete(snapshot_id)
        except SnapshotNotFoundError:
            continue  # another process deleted it first
        deleted.append(snapshot_id)
    return deleted
