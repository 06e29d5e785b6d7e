"""The store contract, run on every store (a folder, and S3 on a local S3-API server), and
what only the folder store does (file modes, temp files, fsync)."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from snapshots.codec import encode
from snapshots.directory import DirectoryStore
from snapshots.errors import (
    BadSignatureError,
    CorruptSnapshotError,
    InvalidSnapshotIdError,
    SnapshotNotFoundError,
    TruncatedSnapshotError,
)
from snapshots.keys import SigningKey, VerifyKeys
from snapshots.location import S3Location
from snapshots.manifest import SnapshotFacts
from snapshots.s3 import S3Store
from snapshots.store import SnapshotStore, last_known_good, latest, load, save
from tests.support import wait_for

SIGNER = SigningKey.generate()
KEY = SIGNER.public
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def snapshot(version: int = 1, model: str = "main", body: bytes = b"state", **kw: Any) -> bytes:
    facts = SnapshotFacts(
        model=model,
        variants=("a",),
        version=version,
        offsets={0: version * 10},
        created_at=T0 + timedelta(minutes=version),
        **kw,
    )
    return encode(facts, body, SIGNER)


@dataclass
class Backend:
    """A store, and raw access to what it stored (as a person with the folder or bucket)."""

    store: SnapshotStore
    names: Callable[[], list[str]]
    """Every stored file or object name, sorted."""
    write: Callable[[str, bytes], None]
    read: Callable[[str], bytes]
    reopen: Callable[[VerifyKeys], SnapshotStore]
    """The same place, opened under other keys."""


def _folder(root: Path) -> Backend:
    def write(name: str, data: bytes) -> None:
        (root / name).write_bytes(data)

    return Backend(
        DirectoryStore(root, KEY),
        lambda: sorted(p.name for p in root.iterdir()),
        write,
        lambda name: (root / name).read_bytes(),
        lambda key: DirectoryStore(root, key),
    )


def _bucket(url: str) -> Backend:
    where = S3Location.parse(url)
    client = boto3.session.Session().client("s3")

    def names() -> list[str]:
        listed = client.list_objects_v2(Bucket=where.bucket, Prefix=where.prefix)
        return sorted(o["Key"][len(where.prefix) :] for o in listed.get("Contents", []))

    def write(name: str, data: bytes) -> None:
        client.put_object(Bucket=where.bucket, Key=where.prefix + name, Body=data)

    def read(name: str) -> bytes:
        return client.get_object(Bucket=where.bucket, Key=where.prefix + name)["Body"].read()

    return Backend(S3Store(where, KEY), names, write, read, lambda key: S3Store(where, key))


@pytest.fixture(params=["folder", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "folder":
        return _folder(tmp_path / "snaps")
    return _bucket(request.getfixturevalue("s3_url"))


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "snaps", KEY)


def files(store: DirectoryStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir())


def test_put_get_list_round_trip(backend: Backend) -> None:
    store = backend.store
    headers = [save(store, snapshot(v), KEY) for v in (2, 1, 3)]
    infos = store.list()
    assert [i.header.version for i in infos] == [1, 2, 3]  # oldest first
    first = infos[0]
    assert first.snapshot_id == "main-20250301T120100000000Z-v000000000001"
    assert first.size == len(snapshot(1)) and first.mtime.tzinfo is not None
    assert first.header.offsets == {0: 10} and not first.last_known_good
    assert store.get(headers[0].snapshot_id) == snapshot(2)
    header, body = load(store, headers[0].snapshot_id, KEY, expect_model="main")
    assert (header, body) == (headers[0], b"state")


def test_snapshots_are_private_to_their_owner(store: DirectoryStore) -> None:
    save(store, snapshot(), KEY)
    for path in (store.root, *store.root.iterdir()):
        assert path.stat().st_mode & 0o077 == 0, path  # user aggregates are personal data


def test_put_again_replaces_atomically(backend: Backend) -> None:
    store = backend.store
    header = save(store, snapshot(1), KEY)
    save(store, snapshot(1), KEY)
    assert [i.snapshot_id for i in store.list()] == [header.snapshot_id]
    assert backend.names() == [f"{header.snapshot_id}.snap"]


def test_latest_and_last_known_good(backend: Backend) -> None:
    store = backend.store
    assert latest(store) is None and last_known_good(store) is None
    for version in (1, 2, 3):
        save(store, snapshot(version), KEY)
    save(store, snapshot(4, model="other"), KEY)
    ids = [i.snapshot_id for i in store.list()]
    newest_main, newest = latest(store, "main"), latest(store)
    assert newest_main is not None and newest_main.snapshot_id == ids[2]
    assert newest is not None and newest.model == "other"
    save(store, snapshot(5, last_known_good=True), KEY)
    store.mark_last_known_good(ids[1])
    good = last_known_good(store, "main")
    assert good is not None and good.header.version == 5
    store.delete(good.snapshot_id)
    good = last_known_good(store, "main")
    assert good is not None and good.snapshot_id == ids[1] and good.marked_last_known_good
    store.delete(ids[1])
    assert last_known_good(store) is None
    assert not any(name.endswith(".lkg") for name in backend.names())


def test_missing_snapshots(backend: Backend) -> None:
    store = backend.store
    for call in (store.get, store.delete, store.mark_last_known_good):
        with pytest.raises(SnapshotNotFoundError, match="nope"):
            call("nope")


BAD_IDS = ["../../etc/passwd", "/etc/passwd", "a/b", "..", "", ".hidden", "a..b", "a\\b", "a\x00b"]


@pytest.mark.parametrize("bad_id", [*BAD_IDS, "x" * 129, "ok\n"])
def test_unsafe_ids_refused_before_touching_the_store(backend: Backend, bad_id: str) -> None:
    store = backend.store
    before = backend.names()
    for call in (store.get, store.delete, store.mark_last_known_good):
        with pytest.raises(InvalidSnapshotIdError):
            call(bad_id)
    with pytest.raises(InvalidSnapshotIdError):
        store.put(bad_id, snapshot())
    with pytest.raises(InvalidSnapshotIdError):
        load(store, bad_id, KEY)
    assert backend.names() == before


def test_a_failed_write_leaves_nothing(
    store: DirectoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        store.put("main-x", snapshot())
    assert files(store) == []


CHILD = """
import os, signal, sys
from pathlib import Path
from snapshots.directory import DirectoryStore

root, ready, blob = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]).read_bytes()
from snapshots.keys import SigningKey
store = DirectoryStore(root, SigningKey.generate().public)

def stall(fd):
    ready.write_text("written, not yet renamed")
    signal.pause()  # until the test kills this process

os.fsync = stall
store.put("main-crash", blob)
"""


def test_a_writer_killed_mid_write_leaves_nothing_listable(
    store: DirectoryStore, tmp_path: Path
) -> None:
    blob = snapshot(body=os.urandom(4 << 20))
    (tmp_path / "blob").write_bytes(blob)
    ready = tmp_path / "ready"
    args = [sys.executable, "-c", CHILD, str(store.root), str(ready), str(tmp_path / "blob")]
    child = subprocess.Popen(args)
    try:
        wait_for(lambda: ready.exists() or child.poll() is not None, "the writer to stall")
        assert child.poll() is None, "the writer exited before it stalled"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    (temp,) = store.root.iterdir()
    assert temp.name.startswith(".main-crash.") and temp.stat().st_size == len(blob)

    reopened = DirectoryStore(store.root, KEY)  # a young temp file may be a live writer's
    assert reopened.list() == [] and reopened.rejected() == [] and temp.exists()
    with pytest.raises(SnapshotNotFoundError):
        reopened.get("main-crash")
    assert latest(reopened) is None

    DirectoryStore(store.root, KEY, stale_after_s=0)
    assert files(store) == []


def test_stale_temp_files_are_cleaned_on_start(store: DirectoryStore) -> None:
    old, young = store.root / ".main-1.abc.tmp", store.root / ".main-2.def.tmp"
    old.write_bytes(b"partial")
    young.write_bytes(b"partial")
    an_hour_ago = time.time() - 3601
    os.utime(old, (an_hour_ago, an_hour_ago))
    DirectoryStore(store.root, KEY)
    assert files(store) == [young.name]


def test_partial_or_foreign_files_never_list_or_load(backend: Backend) -> None:
    store = backend.store
    blob = snapshot(body=os.urandom(10_000))
    header = save(store, blob, KEY)
    good = header.snapshot_id
    backend.write("cut-in-body.snap", blob[: len(blob) // 2])
    backend.write("cut-in-header.snap", blob[:40])
    backend.write("foreign.snap", snapshot(2)[:-32] + bytes(32))
    backend.write("empty.snap", b"")
    backend.write("renamed.snap", snapshot(3))
    backend.write("notes.txt", b"not a snapshot name")
    assert [i.snapshot_id for i in store.list()] == [good]
    reasons = dict(store.rejected())
    assert sorted(reasons) == sorted(
        ["cut-in-body.snap", "cut-in-header.snap", "foreign.snap", "empty.snap", "renamed.snap"]
    )
    assert "partial" in reasons["cut-in-body.snap"] and "renamed" in reasons["renamed.snap"]
    with pytest.raises(TruncatedSnapshotError):
        load(store, "cut-in-body", KEY)
    with pytest.raises(CorruptSnapshotError):
        load(store, "renamed", KEY)


def test_listing_reads_headers_not_bodies(backend: Backend) -> None:
    store = backend.store
    header = save(store, snapshot(body=os.urandom(10_000)), KEY)
    name = f"{header.snapshot_id}.snap"
    data = bytearray(backend.read(name))
    data[-100] ^= 0xFF  # damage the body only
    backend.write(name, bytes(data))
    assert [i.snapshot_id for i in store.list()] == [header.snapshot_id]
    with pytest.raises(BadSignatureError):  # restore still verifies everything
        load(store, header.snapshot_id, KEY)


def test_listing_under_another_key_shows_nothing(backend: Backend) -> None:
    save(backend.store, snapshot(), KEY)
    other = backend.reopen(SigningKey.generate().public)
    assert other.list() == [] and "bad signature" in other.rejected()[0].reason
