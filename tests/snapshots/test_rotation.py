"""Rotating the signing key: verify under the current or a previous public key, sign with
the current one, re-sign old files without touching what they hold; and moving format-1
(HMAC) snapshots to Ed25519."""

import subprocess
from pathlib import Path

import pytest

from snapshots.codec import decode, encode, read_header, resign, signed_with
from snapshots.directory import DirectoryStore
from snapshots.errors import (
    BadSignatureError,
    CorruptSnapshotError,
    LegacySnapshotError,
    MissingKeyError,
)
from snapshots.keys import SigningKey
from snapshots.settings import SigningSettings
from snapshots.store import save
from tests.snapshots.test_codec import assemble_legacy, facts, split
from tests.support import headrace

OLD = SigningKey.generate()
NEW = SigningKey.generate()
LEGACY = "legacy-hmac-key-0123456789-abcdefghij"
BODY = b"the learner's state" * 100


def test_a_snapshot_verifies_under_any_accepted_key_and_only_those() -> None:
    blob = encode(facts(), BODY, OLD)
    assert decode(blob, (NEW.public, OLD.public))[1] == BODY
    assert read_header(blob, (NEW.public, OLD.public)).version == 42
    with pytest.raises(BadSignatureError):
        decode(blob, (NEW.public,))
    with pytest.raises(BadSignatureError):
        read_header(blob, NEW.public)
    with pytest.raises(MissingKeyError):
        decode(blob, ())


def test_resign_changes_the_signatures_and_nothing_else() -> None:
    blob = encode(facts(), BODY, OLD)
    again = resign(blob, (NEW.public, OLD.public), NEW)
    assert len(again) == len(blob) and again[:-64] != blob[:-64]
    header, body = decode(again, NEW.public)
    assert body == BODY
    assert header == decode(blob, OLD.public)[0]
    assert signed_with(again, NEW.public) and not signed_with(again, OLD.public)
    assert signed_with(blob, OLD.public) and not signed_with(blob, NEW.public)
    with pytest.raises(BadSignatureError):
        decode(again, OLD.public)


def test_resign_refuses_what_does_not_verify() -> None:
    blob = encode(facts(), BODY, OLD)
    with pytest.raises(BadSignatureError):
        resign(blob, (NEW.public,), NEW)  # the old key is not accepted
    tampered = bytearray(blob)
    tampered[-80] ^= 1
    with pytest.raises(BadSignatureError):
        resign(bytes(tampered), (NEW.public, OLD.public), NEW)
    with pytest.raises(CorruptSnapshotError):
        resign(b"not a snapshot at all, just bytes", (OLD.public,), NEW)


def test_a_legacy_hmac_snapshot_moves_to_ed25519_only_with_its_key() -> None:
    header, body = split(encode(facts(), BODY, OLD))[1:]
    legacy = assemble_legacy(LEGACY.encode(), header, body)
    with pytest.raises(LegacySnapshotError):
        decode(legacy, (NEW.public, OLD.public))
    with pytest.raises(MissingKeyError):
        resign(legacy, NEW.public, NEW)
    with pytest.raises(BadSignatureError):
        resign(legacy, NEW.public, NEW, legacy=(b"another-legacy-key-0123456789-abcdef",))
    moved = resign(legacy, NEW.public, NEW, legacy=(LEGACY.encode(),))
    moved_header, moved_body = decode(moved, NEW.public)
    assert moved_body == BODY and moved_header.format_version == 2
    assert moved_header.snapshot_id == header["snapshot_id"]
    assert moved_header.body_sha256 == header["body_sha256"]


def test_previous_keys_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_SIGNING_KEY", NEW.text)
    monkeypatch.setenv("HEADRACE_VERIFY_PREVIOUS_KEYS", f" {OLD.public.text} ,{NEW.public.text},")
    settings = SigningSettings()
    # The signing key's public key first; listing it again among the previous ones changes
    # nothing.
    assert settings.verify_keys() == (NEW.public, OLD.public)
    assert settings.signer().public == NEW.public
    assert NEW.text not in repr(settings)
    monkeypatch.setenv("HEADRACE_VERIFY_PREVIOUS_KEYS", "")
    assert SigningSettings().verify_keys() == (NEW.public,)


def test_a_store_lists_snapshots_of_every_accepted_key(tmp_path: Path) -> None:
    save(DirectoryStore(tmp_path, OLD.public), encode(facts(version=1), BODY, OLD), OLD.public)
    save(DirectoryStore(tmp_path, NEW.public), encode(facts(version=2), BODY, NEW), NEW.public)
    both = DirectoryStore(tmp_path, (NEW.public, OLD.public))
    assert [i.header.version for i in both.list()] == [1, 2]
    only_new = DirectoryStore(tmp_path, NEW.public)
    assert [i.header.version for i in only_new.list()] == [2]
    assert len(only_new.rejected()) == 1


def _cli(
    tmp_path: Path, *args: str, previous: bool = True, legacy: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HEADRACE_SIGNING_KEY": NEW.text,
        "HEADRACE_SNAPSHOT_DIR": str(tmp_path),
        **({"HEADRACE_VERIFY_PREVIOUS_KEYS": OLD.public.text} if previous else {}),
        **({"HEADRACE_SNAPSHOT_LEGACY_KEYS": LEGACY} if legacy else {}),
    }
    return headrace(env, "snapshot", *args)


def _save(tmp_path: Path, key: SigningKey, version: int) -> object:
    return save(
        DirectoryStore(tmp_path, key.public), encode(facts(version=version), BODY, key), key.public
    )


def test_verify_and_resign_commands(tmp_path: Path) -> None:
    old = [_save(tmp_path, OLD, v) for v in (1, 2)]
    new = _save(tmp_path, NEW, 3)
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
    ids = {i.snapshot_id for i in DirectoryStore(tmp_path, NEW.public).list()}
    assert ids == {h.snapshot_id for h in [*old, new]}  # type: ignore[attr-defined]


def test_resign_moves_legacy_snapshots_given_their_key(tmp_path: Path) -> None:
    header, body = split(encode(facts(), BODY, OLD))[1:]
    (tmp_path / f"{header['snapshot_id']}.snap").write_bytes(
        assemble_legacy(LEGACY.encode(), header, body)
    )
    without = _cli(tmp_path, "resign", previous=False)
    assert without.returncode == 1 and "legacy HMAC signature" in without.stderr
    moved = _cli(tmp_path, "resign", previous=False, legacy=True)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.startswith("1 re-signed, 0 already signed with the current key, 0 refused")
    listed = DirectoryStore(tmp_path, NEW.public).list()
    assert [i.snapshot_id for i in listed] == [header["snapshot_id"]]


def test_resign_reports_a_file_it_cannot_verify(tmp_path: Path) -> None:
    _save(tmp_path, SigningKey.generate(), 42)
    done = _cli(tmp_path, "resign")
    assert done.returncode == 1
    assert "0 re-signed, 0 already signed with the current key, 1 refused" in done.stdout
    assert "bad signature" in done.stderr
