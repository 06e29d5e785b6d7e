"""Where snapshot files live: a small store interface and its directory implementation.

Listing reads each file's prefix (the header and its MAC), not a sidecar: one
snapshot stays one file, written by one atomic rename, so a header can never
disagree with its body or outlive it; an S3-compatible store does the same with
a ranged GET. The store sees only bytes; restoring goes through `load`, which
verifies before the caller deserializes.
"""

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, Protocol

from snapshots.codec import decode, peek, read_header
from snapshots.errors import CorruptSnapshotError, SnapshotError, SnapshotNotFoundError
from snapshots.keys import VerifyKeys
from snapshots.manifest import SnapshotHeader, SnapshotInfo, validate_snapshot_id

SUFFIX = ".snap"
LKG_SUFFIX = ".lkg"
TEMP_SUFFIX = ".tmp"


class SnapshotStore(Protocol):
    """What the learner, the API and retention need from any snapshot store."""

    def put(self, snapshot_id: str, blob: bytes) -> None: ...
    def get(self, snapshot_id: str) -> bytes: ...
    def delete(self, snapshot_id: str) -> None: ...
    def mark_last_known_good(self, snapshot_id: str) -> None: ...
    # Last: in a class body, `list` names this method from here on.
    def list(self) -> list[SnapshotInfo]: ...


class Rejected(NamedTuple):
    """A file in the store that is not a listable snapshot, and why."""

    name: str
    reason: str


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryStore:
    """Snapshots as `<id>.snap` files in one folder; `<id>.lkg` marks a last known good.

    Writes go to a hidden temp file in the same folder, are fsynced, renamed into
    place and the folder fsynced: a reader sees the whole file or none. Temp files
    left by a killed writer are never listed and are removed by the next store
    opened on the folder once older than `stale_after_s`.
    """

    def __init__(self, path: str | Path, key: VerifyKeys, stale_after_s: float = 3600.0) -> None:
        self.root = Path(path)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._key = key
        self.clean_temp_files(stale_after_s)

    def _path(self, snapshot_id: str, suffix: str = SUFFIX) -> Path:
        return self.root / f"{validate_snapshot_id(snapshot_id)}{suffix}"

    def clean_temp_files(self, older_than_s: float) -> list[str]:
        """Remove temp files untouched for `older_than_s` (a younger one may be mid-write)."""
        removed = []
        cutoff = time.time() - older_than_s
        for path in self.root.glob(f".*{TEMP_SUFFIX}"):
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed.append(path.name)
            except FileNotFoundError:
                continue
        return removed

    def put(self, snapshot_id: str, blob: bytes) -> None:
        target = self._path(snapshot_id)
        fd, name = tempfile.mkstemp(prefix=f".{snapshot_id}.", suffix=TEMP_SUFFIX, dir=self.root)
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            temp.replace(target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)

    def get(self, snapshot_id: str) -> bytes:
        try:
            return self._path(snapshot_id).read_bytes()
        except FileNotFoundError:
            raise SnapshotNotFoundError(snapshot_id) from None

    def delete(self, snapshot_id: str) -> None:
        path = self._path(snapshot_id)
        self._path(snapshot_id, LKG_SUFFIX).unlink(missing_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            raise SnapshotNotFoundError(snapshot_id) from None
        _fsync_dir(self.root)

    def mark_last_known_good(self, snapshot_id: str) -> None:
        # A marker beside the file, not a rewrite: the store holds no signing duty, and a
        # marker can only promote a snapshot that still verifies on restore.
        if not self._path(snapshot_id).exists():
            raise SnapshotNotFoundError(snapshot_id)
        self._path(snapshot_id, LKG_SUFFIX).touch()
        _fsync_dir(self.root)

    def rejected(self) -> list[Rejected]:
        """Files named like snapshots that do not list: foreign, tampered or partial."""
        return [i for i in self._scan() if isinstance(i, Rejected)]

    def _scan(self) -> Iterator[SnapshotInfo | Rejected]:
        for path in sorted(self.root.glob(f"*{SUFFIX}")):
            snapshot_id = path.name[: -len(SUFFIX)]
            try:
                validate_snapshot_id(snapshot_id)
                with path.open("rb") as file:
                    stat = os.fstat(file.fileno())
                    header, size = peek(file, self._key)
                if size != stat.st_size:
                    raise CorruptSnapshotError(f"{stat.st_size} bytes, declares {size}: partial")
                if header.snapshot_id != snapshot_id:
                    raise CorruptSnapshotError(f"file renamed from {header.snapshot_id!r}")
            except FileNotFoundError:
                continue  # deleted while we listed
            except SnapshotError as exc:
                yield Rejected(path.name, str(exc))
                continue
            yield SnapshotInfo(
                snapshot_id=snapshot_id,
                size=stat.st_size,
                mtime=datetime.fromtimestamp(stat.st_mtime, UTC),
                header=header,
                marked_last_known_good=self._path(snapshot_id, LKG_SUFFIX).exists(),
            )

    def list(self) -> list[SnapshotInfo]:
        """Every snapshot whose header verifies and whose size is whole, oldest first."""
        return sorted((i for i in self._scan() if isinstance(i, SnapshotInfo)), key=_age)


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
