"""Ed25519 keys and their settings: what is accepted, and every weak key refused, retired
keys included (a key that proves nothing must not be listed anywhere)."""

import base64
import hashlib
import hmac
import json
import pickle
import struct
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr, ValidationError

from snapshots.codec import decode, encode
from snapshots.errors import MissingKeyError, NoSigningKeyError, WeakKeyError
from snapshots.keys import DEV_KEY, SigningKey, VerifyKey, encode_text
from snapshots.settings import SigningSettings
from tests.snapshots.test_codec import Evil, facts
from tests.support import headrace

SMALL_ORDER = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    b"\xec" + b"\xff" * 30 + b"\x7f",
    b"\xed" + b"\xff" * 30 + b"\x7f",
    b"\xee" + b"\xff" * 30 + b"\x7f",
]
DEV_SEED = hashlib.sha256(DEV_KEY).digest()
DEV_PRIVATE = Ed25519PrivateKey.from_private_bytes(DEV_SEED)
DEV_PUBLIC = encode_text(
    DEV_PRIVATE.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "HEADRACE_SIGNING_KEY",
        "HEADRACE_SIGNING_KEY_FILE",
        "HEADRACE_VERIFY_KEY",
        "HEADRACE_VERIFY_PREVIOUS_KEYS",
        "HEADRACE_SNAPSHOT_LEGACY_KEYS",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_text_and_pem_forms_round_trip() -> None:
    key = SigningKey.generate()
    again = SigningKey.parse(key.text)
    assert again.public == key.public and key.text not in repr(key)
    standard = base64.b64encode(base64.urlsafe_b64decode(key.public.text + "=")).decode()
    assert VerifyKey.parse(standard) == key.public
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert SigningKey.parse(pem).public == VerifyKey.parse(public_pem)
    data = b"anything"
    assert SigningKey.parse(pem).public.verify(SigningKey.parse(pem).sign(data), data)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not base64!", "neither base64 nor PEM"),
        (base64.b64encode(b"k3y").decode(), "shorter than 32 bytes"),
        (base64.b64encode(bytes(range(48))).decode(), "48 bytes"),
        (base64.b64encode(DEV_KEY[:32]).decode(), "printable text"),
        (base64.b64encode(b"ab" * 16).decode(), "printable text"),
        (base64.b64encode(bytes([1, 2, 3]) * 10 + b"\x01\x02").decode(), "distinct bytes"),
        (encode_text(DEV_SEED), "public development key"),
    ],
)
def test_weak_signing_keys_are_refused(text: str, why: str) -> None:
    with pytest.raises(WeakKeyError, match=why):
        SigningKey.parse(text)


def test_small_order_keys_are_refused_because_openssl_accepts_forgeries_under_them() -> None:
    forged = b"\x01" + bytes(31) + bytes(32)  # R = identity, S = 0: no secret involved
    Ed25519PublicKey.from_public_bytes(SMALL_ORDER[1]).verify(forged, b"a code-running pickle")
    for raw in [*SMALL_ORDER, *(p[:31] + bytes([p[31] | 0x80]) for p in SMALL_ORDER)]:
        with pytest.raises(WeakKeyError, match="small order"):
            VerifyKey(raw)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(SigningKey.generate().public.raw).verify(forged, b"x")


def test_the_development_public_key_is_refused() -> None:
    with pytest.raises(WeakKeyError, match="public development key"):
        VerifyKey.parse(DEV_PUBLIC)


def test_no_key_no_signing_and_no_verifying(clean_env: pytest.MonkeyPatch) -> None:
    settings = SigningSettings()
    with pytest.raises(NoSigningKeyError, match="no unsigned state or snapshots"):
        settings.signer()
    with pytest.raises(MissingKeyError, match="HEADRACE_VERIFY_KEY"):
        settings.verify_keys()
    clean_env.setenv("HEADRACE_SIGNING_KEY", "")
    assert not SigningSettings().has_signer


def test_a_learner_needs_only_its_signing_key(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = SigningKey.generate()
    path = tmp_path / "signing.key"
    path.write_text(key.text + "\n")
    clean_env.setenv("HEADRACE_SIGNING_KEY_FILE", str(path))
    settings = SigningSettings()
    assert settings.signer().public == key.public
    assert settings.verify_keys() == (key.public,)
    assert key.text not in repr(settings)
    clean_env.setenv("HEADRACE_SIGNING_KEY", key.text)
    with pytest.raises(ValidationError, match="not both"):
        SigningSettings()


def test_a_signing_key_its_own_verify_keys_refuse_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="would refuse its own state"):
        SigningSettings(
            signing_key=SecretStr(SigningKey.generate().text),
            verify_key=SigningKey.generate().public.text,
        )


@pytest.mark.parametrize(
    "previous",
    [DEV_PUBLIC, base64.b64encode(b"k3y").decode(), encode_text(SMALL_ORDER[1])],
    ids=["dev key", "3-byte key", "identity point"],
)
def test_weak_previous_verify_keys_are_refused(
    clean_env: pytest.MonkeyPatch, previous: str
) -> None:
    current = SigningKey.generate().public.text
    clean_env.setenv("HEADRACE_VERIFY_KEY", current)
    clean_env.setenv("HEADRACE_VERIFY_PREVIOUS_KEYS", f"{current},{previous}")
    with pytest.raises(ValidationError, match="HEADRACE_VERIFY_PREVIOUS_KEYS key 2") as refused:
        SigningSettings()
    assert previous not in str(refused.value)  # the refusal does not echo the key to logs


@pytest.mark.parametrize(
    "legacy",
    ["k3y", DEV_KEY.decode(), "changeme-please-0123456789-abcdefghij", "a" * 64],
    ids=["3-byte key", "dev key", "placeholder", "one character"],
)
def test_weak_legacy_hmac_keys_are_refused(clean_env: pytest.MonkeyPatch, legacy: str) -> None:
    clean_env.setenv("HEADRACE_SNAPSHOT_LEGACY_KEYS", legacy)
    with pytest.raises(ValidationError, match="proves nothing") as refused:
        SigningSettings()
    assert legacy not in str(refused.value)


def _dev_signed_snapshot(marker: Path) -> bytes:
    """A snapshot holding a code-running pickle, signed with the development key pair
    (built with `cryptography` directly: headrace refuses to sign with it)."""
    blob = encode(facts(), pickle.dumps(Evil(marker)), SigningKey.generate())
    header_len = struct.unpack_from(">I", blob, 10)[0]
    prefix = bytearray(blob[: 22 + header_len])
    prefix += DEV_PRIVATE.sign(b"headrace-snapshot-header\x00" + prefix)
    prefix += blob[22 + header_len + 64 : -64]
    return bytes(prefix) + DEV_PRIVATE.sign(b"headrace-snapshot-file\x00" + prefix)


def _legacy_dev_snapshot(marker: Path) -> bytes:
    """The same, as a format-1 file under the old public HMAC development key."""
    blob = encode(facts(), pickle.dumps(Evil(marker)), SigningKey.generate())
    header_len = struct.unpack_from(">I", blob, 10)[0]
    header = json.loads(blob[22 : 22 + header_len]) | {"format_version": 1}
    header_json = json.dumps(header, separators=(",", ":")).encode()
    body = blob[22 + header_len + 64 : -64]
    out = b"\x89HRS\r\n\x1a\n" + struct.pack(">HIQ", 1, len(header_json), len(body)) + header_json
    out += hmac.new(DEV_KEY, b"headrace-snapshot-header\x00" + out, hashlib.sha256).digest()
    out += body
    return out + hmac.new(DEV_KEY, b"headrace-snapshot-file\x00" + out, hashlib.sha256).digest()


def test_a_snapshot_signed_with_the_dev_key_never_verifies(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.snap"
    path.write_bytes(_dev_signed_snapshot(marker))
    legacy = tmp_path / "legacy.snap"
    legacy.write_bytes(_legacy_dev_snapshot(marker))
    current = SigningKey.generate().public.text
    base = {"PATH": "/usr/bin:/bin", "HEADRACE_VERIFY_KEY": current}

    plain = headrace(base, "snapshot", "verify", str(path), str(legacy))
    assert plain.returncode == 1 and "0 verified, 2 refused" in plain.stdout
    assert "legacy HMAC signature" in plain.stdout
    # Listing the development key as a retired key is refused outright, not trusted.
    listed = headrace(
        {**base, "HEADRACE_VERIFY_PREVIOUS_KEYS": DEV_PUBLIC}, "snapshot", "verify", str(path)
    )
    assert listed.returncode == 2 and "ok " not in listed.stdout
    assert "HEADRACE_VERIFY_PREVIOUS_KEYS" in listed.stderr
    assert "public development key" in listed.stderr
    for weak in (DEV_KEY.decode(), "k3y"):
        env = {**base, "HEADRACE_SNAPSHOT_LEGACY_KEYS": weak}
        refused = headrace(env, "snapshot", "verify", str(legacy))
        assert refused.returncode == 2 and "ok " not in refused.stdout
        assert "HEADRACE_SNAPSHOT_LEGACY_KEYS" in refused.stderr
    with pytest.raises(WeakKeyError):
        decode(path.read_bytes(), (VerifyKey.parse(current), VerifyKey.parse(DEV_PUBLIC)))
    assert not marker.exists()
