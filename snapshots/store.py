"""What every snapshot store offers, and what is built on it: save, load, latest, last known good.

Listing reads each snapshot's prefix (the header and its signature), not a sidecar: one
snapshot stays one file or object, written in one atomic step, so a header can never
disagree with its body or outlive it. A folder (snapshots/directory.py) renames a
finished temp file into place; object storage (snapshots/s3.py) makes an object visible
only once its upload is complete, and reads the prefix with a ranged GET. Either way a
listing shows only snapshots whose signed header verifies and whose stored size is the
one the header declares. The store sees only bytes; restoring goes through `load`, which
verifies before the caller deserializes.
"""

from datetime import datetime
from typing import IO, NamedTuple, Protocol

from snapshots.codec import decode, peek, read_header
from snapshots.errors import CorruptSnapshotError
from snapshots.keys import VerifyKeys
from snapshots.manifest import SnapshotHeader, SnapshotInfo, validate_snapshot_id

SUFFIX = ".snap"
LKG_SUFFIX = ".lkg"


class Rejected(NamedTuple):
    """A stored file named like a snapshot that is not a listable one, and why."""

    name: str
    reason: str


class SnapshotStore(Protocol):
    """What the learner, the API, the CLI and retention need from any snapshot store."""

    @property
    def location(self) -> str:
        """Where the snapshots are, for messages: a folder, or s3://bucket/prefix."""
        ...

    def put(self, snapshot_id: str, blob: bytes) -> None:
        """Store the whole blob under the id; readers see all of it or nothing."""
        ...

    def get(self, snapshot_id: str) -> bytes:
        """The stored bytes, unverified; SnapshotNotFoundError when absent."""
        ...

    def delete(self, snapshot_id: str) -> None:
        """Remove a snapshot and its mark; SnapshotNotFoundError when absent."""
        ...

    def mark_last_known_good(self, snapshot_id: str) -> None:
        """Promote a stored snapshot to last known good; SnapshotNotFoundError when absent."""
        ...

    def rejected(self) -> "list[Rejected]":
        """Stored names that look like snapshots but do not list: foreign, tampered, partial."""
        ...

    # Last: in a class body, `list` names this method from here on.
    def list(self) -> list[SnapshotInfo]:
        """Every snapshot whose header verifies and whose size is whole, oldest first."""
        ...


def describe(
    snapshot_id: str,
    stored_size: int,
    mtime: datetime,
    prefix: IO[bytes],
    key: VerifyKeys,
    *,
    marked_last_known_good: bool,
) -> SnapshotInfo:
    """The listing entry of one stored snapshot, from its first bytes and its stored size.

    A SnapshotError says why it does not list: a bad id, a header that does not verify, a
    size other than the declared one (a partial write), or a file renamed from another id.
    """
    validate_snapshot_id(snapshot_id)
    header, size = peek(prefix, key)
    if size != stored_size:
        raise CorruptSnapshotError(f"{stored_size} bytes, declares {size}: partial")
    if header.snapshot_id != snapshot_id:
        raise CorruptSnapshotError(f"file renamed from {header.snapshot_id!r}")
    return SnapshotInfo(
        snapshot_id=snapshot_id,
        size=stored_size,
        mtime=mtime,
        header=header,
        marked_last_known_good=marked_last_known_good,
    )


def oldest_first(infos: "list[SnapshotInfo]") -> list[SnapshotInfo]:
    return sorted(infos, key=_age)


def _age(info: SnapshotInfo) -> tuple[datetime, int, str]:
    return info.created_at, info.header.version, info.snapshot_id


def latest(store: SnapshotStore, model: str | None = None) -> SnapshotInfo | None:
    """The newest listed snapshot (of `model`, when given)."""
    infos = [i for i in store.list() if model is None or i.model == model]
    return max(infos, key=_age, default=None)


def last_known_good(store: SnapshotStore, model: str | None = None) -> SnapshotInfo | None:
    """The newest snapshot marked last known good (of `model`, when given)."""
    infos = [i for i in store.list() if i.last_known_good and (model is None or i.model == model)]
    return max(infos, key=_age, default=None)


def save(store: SnapshotStore, blob: bytes, key: VerifyKeys) -> SnapshotHeader:
    """Store an encoded snapshot under the id its own signed header names."""
    header = read_header(blob, key)
    store.put(header.snapshot_id, blob)
    return header


def load(
    store: SnapshotStore,
    snapshot_id: str,
    key: VerifyKeys,
    expect_model: str | None = None,
    expect_variant: str | None = None,
    *,
    check_libraries: bool = True,
) -> tuple[SnapshotHeader, bytes]:
    """Fetch and fully verify one snapshot: the header and the body bytes to deserialize."""
    blob = store.get(snapshot_id)
    header, body = decode(blob, key, expect_model, expect_variant, check_libraries=check_libraries)
    if header.snapshot_id != snapshot_id:
        raise CorruptSnapshotError(f"stored as {snapshot_id!r}, signed as {header.snapshot_id!r}")
    return header, body
