"""The folder snapshot store: one `<id>.snap` file a snapshot, written by an atomic rename."""

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from snapshots.errors import SnapshotError, SnapshotNotFoundError
from snapshots.keys import VerifyKeys
from snapshots.manifest import SnapshotInfo, validate_snapshot_id
from snapshots.store import LKG_SUFFIX, SUFFIX, Rejected, describe, oldest_first

TEMP_SUFFIX = ".tmp"


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

    @property
    def location(self) -> str:
        return str(self.root)

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
            try:
                with path.open("rb") as file:
                    stat = os.fstat(file.fileno())
                    yield describe(
                        path.name[: -len(SUFFIX)],
                        stat.st_size,
                        datetime.fromtimestamp(stat.st_mtime, UTC),
                        file,
                        self._key,
                        marked_last_known_good=path.with_suffix(LKG_SUFFIX).exists(),
                    )
            except FileNotFoundError:
                continue  # deleted while we listed
            except SnapshotError as exc:
                yield Rejected(path.name, str(exc))

    def list(self) -> list[SnapshotInfo]:
        """Every snapshot whose header verifies and whose size is whole, oldest first."""
        return oldest_first([i for i in self._scan() if isinstance(i, SnapshotInfo)])
