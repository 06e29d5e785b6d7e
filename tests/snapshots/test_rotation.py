"""Rotating the snapshot key: verify under the current or a previous key, sign with the
current one, re-sign old files without touching what they hold."""

import subprocess
from pathlib import Path

import pytest

from snapshots.codec import decode, encode, read_header, resign, signed_with
from snapshots.errors import BadSignatureError, CorruptSnapshotError, MissingKeyError
from snapshots.settings import SnapshotSettings
from snapshots.store import DirectoryStore, save
from tests.snapshots.test_codec import facts
from tests.support import headrace

OLD = b"old-key-0123456789-abcdefghijklmnopq"
NEW = b"new-key-9876543210-zyxwvutsrqponmlkj"
BODY = b"the learner's state" * 100


def test_a_snapshot_verifies_under_any_accepted_key_and_only_those() -> None:
    blob = encode(facts(), BODY, OLD)
    assert decode(blob, (NEW, OLD))[1] == BODY
    assert read_header(blob, (NEW, OLD)).version == 42
    with pytest.raises(BadSignatureError):
        decode(blob, (NEW,))
    with pytest.raises(BadSignatureError):
        read_header(blob, NEW)
    with pytest.raises(MissingKeyError):
        decode(blob, ())


def test_resign_changes_the_signatures_and_nothing_else() -> None:
    blob = encode(facts(), BODY, OLD)
    again = resign(blob, (NEW, OLD), NEW)
    assert len(again) == len(blob) and again[:-32] != blob[:-32]
    header, body = decode(again, NEW)
    assert body == BODY
    assert header == decode(blob, OLD)[0]
    assert signed_with(again, NEW) and not signed_with(again, OLD)
    assert signed_with(blob, OLD) and not signed_with(blob, NEW)
    with pytest.raises(BadSignatureError):
        decode(again, OLD)


def test_resign_refuses_what_does_not_verify() -> None:
    blob = encode(facts(), BODY, OLD)
    with pytest.raises(BadSignatureError):
        resign(blob, (NEW,), NEW)  # the old key is not accepted
    tampered = bytearray(blob)
    tampered[-40] ^= 1
    with pytest.raises(BadSignatureError):
        resign(bytes(tampered), (NEW, OLD), NEW)
    with pytest.raises(CorruptSnapshotError):
        resign(b"not a snapshot at all, just bytes", (OLD,), NEW)
    with pytest.raises(MissingKeyError):
        resign(blob, (OLD,), b"")


def test_previous_keys_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_SNAPSHOT_KEY", NEW.decode())
    monkeypatch.setenv("HEADRACE_SNAPSHOT_PREVIOUS_KEYS", f" {OLD.decode()} ,{NEW.decode()},")
    settings = SnapshotSettings()
    # The signing key first; listing it again among the previous ones changes nothing.
    assert settings.verification_keys() == (NEW, OLD)
    assert settings.signing_key() == NEW
    assert OLD.decode() not in repr(settings)
    monkeypatch.setenv("HEADRACE_SNAPSHOT_PREVIOUS_KEYS", "")
    assert SnapshotSettings().verification_keys() == (NEW,)


def test_a_store_lists_snapshots_of_every_accepted_key(tmp_path: Path) -> None:
    save(DirectoryStore(tmp_path, OLD), encode(facts(version=1), BODY, OLD), OLD)
    save(DirectoryStore(tmp_path, NEW), encode(facts(version=2), BODY, NEW), NEW)
    assert [i.header.version for i in DirectoryStore(tmp_path, (NEW, OLD)).list()] == [1, 2]
    only_new = DirectoryStore(tmp_path, NEW)
    assert [i.header.version for i in only_new.list()] == [2]
    assert len(only_new.rejected()) == 1


def _cli(tmp_path: Path, *args: str, previous: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HEADRACE_SNAPSHOT_KEY": NEW.decode(),
        "HEADRACE_SNAPSHOT_DIR": str(tmp_path),
        **({"HEADRACE_SNAPSHOT_PREVIOUS_KEYS": OLD.decode()} if previous else {}),
    }
    return headrace(env, "snapshot", *args)


def test_verify_and_resign_commands(tmp_path: Path) -> None:
    old = [
        save(DirectoryStore(tmp_path, OLD), encode(facts(version=v), BODY, OLD), OLD)
        for v in (1, 2)
    ]
    new = save(DirectoryStore(tmp_path, NEW), encode(facts(version=3), BODY, NEW), NEW)
    files = sorted(str(p) for p in tmp_path.glob("*.snap"))

    checked = _cli(tmp_path, "verify", *files)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("(signed with a previous key)") == 2
    assert checked.stdout.splitlines()[-1] == "3 verified (2 with a previous key), 0 refused"
    strict = _cli(tmp_path, "verify", "--current-key-only", *files)
    assert strict.returncode == 1
    assert strict.stdout.splitlines()[-1] == "1 verified, 2 refused"

    resigned = _cli(tmp_path, "resign")
    assert resigned.returncode == 0, resigned.stderr
    assert resigned.stdout.startswith(
        "2 re-signed, 1 already signed with the current key, 0 refused"
    )
    after = _cli(tmp_path, "verify", "--current-key-only", *files, previous=False)
    assert after.returncode == 0 and "3 verified, 0 refused" in after.stdout
    ids = {i.snapshot_id for i in DirectoryStore(tmp_path, NEW).list()}
    assert ids == {h.snapshot_id for h in [*old, new]}


def test_resign_reports_a_file_it_cannot_verify(tmp_path: Path) -> None:
    foreign = b"foreign-key-0123456789-abcdefghijklm"
    save(DirectoryStore(tmp_path, foreign), encode(facts(), BODY, foreign), foreign)
    done = _cli(tmp_path, "resign")
    assert done.returncode == 1
    assert "0 re-signed, 0 already signed with the current key, 1 refused" in done.stdout
    assert "bad signature" in done.stderr
