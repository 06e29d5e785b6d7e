"""Retention keeps exactly what the policy says; the last-known-good gate."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from snapshots import retention
from snapshots.codec import encode
from snapshots.directory import DirectoryStore
from snapshots.errors import SnapshotNotFoundError
from snapshots.keys import SigningKey
from snapshots.manifest import (
    SnapshotFacts,
    SnapshotHeader,
    SnapshotInfo,
    make_snapshot_id,
    passes_lkg_gate,
    runtime_libraries,
)
from snapshots.retention import RetentionPolicy, to_delete
from snapshots.store import Rejected, save

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SIGNER = SigningKey.generate()
KEY = SIGNER.public


def at(text: str) -> datetime:
    """'03-09 23:00' in March 2025, UTC (or with an explicit offset: '03-10 01:00+05:00')."""
    return datetime.fromisoformat(f"2025-{text}" if "+" in text else f"2025-{text}+00:00")


def info(
    when: str, model: str = "main", version: int = 1, lkg: bool = False, marked: bool = False
) -> SnapshotInfo:
    created = at(when)
    header = SnapshotHeader(
        snapshot_id=make_snapshot_id(model, created, version),
        model=model,
        variants=("a",),
        version=version,
        offsets={0: 0},
        created_at=created,
        last_known_good=lkg,
        format_version=1,
        libraries=runtime_libraries(),
        compression="zlib",
        body_length=0,
        raw_length=0,
        body_sha256="0" * 64,
    )
    return SnapshotInfo(
        snapshot_id=header.snapshot_id,
        size=1,
        mtime=NOW,  # never used: a copy rewrites mtimes
        header=header,
        marked_last_known_good=marked,
    )


@dataclass
class Case:
    name: str
    infos: list[SnapshotInfo]
    keep_last: int
    keep_daily_days: int
    deleted: list[int]
    """Positions in `infos` of the snapshots that must go."""
    keep_lkg: int | None = None


CASES = [
    Case("fewer than K: keep all", [info("03-10 11:00"), info("03-01 00:00")], 3, 0, []),
    Case(
        "only the newest K",
        [info(f"03-10 0{h}:00") for h in range(5)],
        2,
        0,
        [0, 1, 2],
    ),
    Case(
        "newest of each of the last D UTC days, today included",
        [
            info("03-10 11:00"),
            info("03-10 10:00"),
            info("03-09 23:00"),
            info("03-09 08:00"),
            info("03-08 05:00"),
            info("03-07 23:59"),
        ],
        1,
        3,
        [1, 3, 5],
    ),
    Case(
        "days are UTC days, whatever the offset",
        [info("03-10 11:00"), info("03-10 01:00+05:00"), info("03-09 19:00")],
        1,
        2,
        [2],
    ),
    Case(
        "every last known good, flagged or marked, however old",
        [
            info("03-10 11:00"),
            info("01-01 00:00", lkg=True),
            info("02-01 00:00", marked=True),
            info("02-02 00:00"),
        ],
        1,
        0,
        [3],
    ),
    Case(
        "only the newest last known good when capped",
        [info("03-10 11:00"), info("01-01 00:00", lkg=True), info("02-01 00:00", marked=True)],
        1,
        0,
        [1],
        keep_lkg=1,
    ),
    Case(
        "per model: a busy shard does not evict a quiet one",
        [info(f"03-10 0{h}:00") for h in range(4)] + [info("01-01 00:00", model="quiet")],
        2,
        0,
        [0, 1],
    ),
    Case(
        "same instant: the higher version is newer",
        [info("03-10 11:00", version=1), info("03-10 11:00", version=2)],
        1,
        0,
        [0],
    ),
    Case("D = 0 keeps no dailies", [info("03-10 11:00"), info("03-09 11:00")], 1, 0, [1]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_to_delete(case: Case) -> None:
    doomed = to_delete(case.infos, case.keep_last, case.keep_daily_days, NOW, case.keep_lkg)
    assert doomed == sorted(case.infos[i].snapshot_id for i in case.deleted)


def test_refuses_naive_time_and_deleting_the_newest() -> None:
    with pytest.raises(ValueError, match="aware"):
        to_delete([], 1, 1, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="keep_last"):
        to_delete([info("03-10 11:00")], 0, 0, NOW)


def test_now_in_another_zone_is_the_same_instant() -> None:
    infos = [info("03-10 11:00"), info("03-09 11:00")]
    still_yesterday = NOW.astimezone(timezone(timedelta(hours=-13)))  # 03-09 23:00 there
    assert to_delete(infos, 1, 1, still_yesterday) == [infos[1].snapshot_id]


@dataclass
class MemoryStore:
    """Any SnapshotStore will do: retention only lists and deletes."""

    infos: list[SnapshotInfo]
    deleted: list[str] = field(default_factory=list)
    location: str = "memory"

    def put(self, snapshot_id: str, blob: bytes) -> None:
        raise NotImplementedError

    def get(self, snapshot_id: str) -> bytes:
        raise NotImplementedError

    def delete(self, snapshot_id: str) -> None:
        if snapshot_id == self.infos[0].snapshot_id:
            raise SnapshotNotFoundError(snapshot_id)  # someone else was faster
        self.deleted.append(snapshot_id)

    def mark_last_known_good(self, snapshot_id: str) -> None:
        raise NotImplementedError

    def rejected(self) -> list[Rejected]:
        return []

    def list(self) -> list[SnapshotInfo]:
        return self.infos


def test_apply_deletes_and_tolerates_a_concurrent_delete() -> None:
    infos = [info(f"03-10 0{h}:00") for h in range(4)]
    store = MemoryStore(infos)
    deleted = retention.apply(store, RetentionPolicy(keep_last=1, keep_daily_days=0), NOW)
    assert deleted == store.deleted == [infos[1].snapshot_id, infos[2].snapshot_id]


def test_apply_on_a_directory(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, KEY)
    for minute in range(5):
        created = NOW - timedelta(minutes=minute)
        facts = SnapshotFacts(
            model="main", variants=("a",), version=10 - minute, offsets={}, created_at=created
        )
        save(store, encode(facts, b"", SIGNER), KEY)
    deleted = retention.apply(store, RetentionPolicy(keep_last=2, keep_daily_days=1), NOW)
    assert len(deleted) == 3
    assert [i.header.version for i in store.list()] == [9, 10]


@pytest.mark.parametrize(
    ("loss", "lkg_loss", "passes"),
    [
        (0.30, None, True),
        (0.25, 0.30, True),
        (0.306, 0.30, True),
        (0.307, 0.30, False),
        (float("nan"), 0.30, False),
        (float("inf"), None, False),
    ],
)
def test_last_known_good_gate(loss: float, lkg_loss: float | None, passes: bool) -> None:
    assert passes_lkg_gate(loss, lkg_loss, margin=0.02) is passes
