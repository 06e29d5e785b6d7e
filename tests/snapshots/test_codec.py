"""The snapshot format: round trips, and every refusal raising its own error, unpickling nothing.

`assemble` re-implements the documented byte layout independently of the codec (with
`cryptography`'s Ed25519 directly), so these tests also pin the format: a signed file
built from the spec decodes.
"""

import ast
import hashlib
import hmac
import io
import json
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from snapshots import codec
from snapshots.codec import decode, encode, peek, read_header
from snapshots.errors import (
    BadSignatureError,
    CorruptSnapshotError,
    IncompatibleVersionError,
    LegacySnapshotError,
    MissingKeyError,
    SnapshotRefusedError,
    TruncatedSnapshotError,
    UnsignedSnapshotError,
    WrongModelError,
)
from snapshots.keys import SigningKey
from snapshots.manifest import Compression, Libraries, SnapshotFacts, runtime_libraries
from snapshots.settings import SnapshotSettings

SIGNER = SigningKey.generate()
KEY = SIGNER.public
OTHER = SigningKey.generate()
MAGIC = b"\x89HRS\r\n\x1a\n"
SIG = 64


def facts(**changes: Any) -> SnapshotFacts:
    fields: dict[str, Any] = {
        "model": "main",
        "variants": ("a", "b"),
        "version": 42,
        "offsets": {0: 120, 1: 7},
        "n_learned": {"a": 100, "b": 90},
        "metrics": {"a": {"log_loss": 0.31}, "b": {"log_loss": 0.35}},
    }
    return SnapshotFacts.model_validate(fields | changes)


def _plant(marker: str) -> None:
    Path(marker).write_text("code ran")


class Evil:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return _plant, (str(self.marker),)


def restore(blob: bytes, key: Any = KEY, expect_model: str | None = None) -> object:
    """What a caller does: decode, then (only then) unpickle."""
    _, body = decode(blob, key, expect_model)
    return pickle.loads(body)


def split(blob: bytes) -> tuple[int, dict[str, Any], bytes]:
    _, version, header_len, body_len = struct.unpack_from(">8sHIQ", blob)
    header = json.loads(blob[22 : 22 + header_len])
    start = 22 + header_len + SIG
    return version, header, blob[start : start + body_len]


def _private(key: SigningKey) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_seed(key))


def _seed(key: SigningKey) -> bytes:
    import base64

    text = key.text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def assemble(key: SigningKey, version: int, header: dict[str, Any], body: bytes) -> bytes:
    private = _private(key)
    header_json = json.dumps(header, separators=(",", ":")).encode()
    out = MAGIC + struct.pack(">HIQ", version, len(header_json), len(body)) + header_json
    out += private.sign(b"headrace-snapshot-header\x00" + out)
    out += body
    return out + private.sign(b"headrace-snapshot-file\x00" + out)


def assemble_legacy(key: bytes, header: dict[str, Any], body: bytes) -> bytes:
    """A format-1 file: the same layout with HMAC-SHA256 tags (what headrace wrote before)."""
    header_json = json.dumps(header | {"format_version": 1}, separators=(",", ":")).encode()
    out = MAGIC + struct.pack(">HIQ", 1, len(header_json), len(body)) + header_json
    out += hmac.new(key, b"headrace-snapshot-header\x00" + out, hashlib.sha256).digest()
    out += body
    return out + hmac.new(key, b"headrace-snapshot-file\x00" + out, hashlib.sha256).digest()


def resign(blob: bytes, key: SigningKey = SIGNER, **header_changes: Any) -> bytes:
    version, header, body = split(blob)
    return assemble(key, version, header | header_changes, body)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def evil_blob(marker: Path) -> bytes:
    return encode(facts(), pickle.dumps(Evil(marker)), SIGNER)


def test_round_trip() -> None:
    body = pickle.dumps({"weights": list(range(1000))})
    given = facts(last_known_good=True)
    blob = encode(given, body, SIGNER)
    header, decoded = decode(blob, KEY, expect_model="main", expect_variant="b")
    assert decoded == body
    assert header.snapshot_id == given.snapshot_id and header.created_at == given.created_at
    assert header.variant == "*" and header.variants == ("a", "b")
    assert header.offsets == {0: 120, 1: 7} and header.version == 42
    assert header.metrics["b"] == {"log_loss": 0.35} and header.n_learned == {"a": 100, "b": 90}
    assert header.last_known_good and header.libraries == runtime_libraries()
    assert header.raw_length == len(body) and header.created_at.utcoffset() is not None
    assert header.body_sha256 == hashlib.sha256(split(blob)[2]).hexdigest()


@pytest.mark.parametrize("compression", ["zlib", "lzma"])
@pytest.mark.parametrize("body", [b"", b"x", bytes(range(256)) * 4000])
def test_round_trip_compressions(compression: Compression, body: bytes) -> None:
    blob = encode(facts(), body, SIGNER, compression=compression)
    header, decoded = decode(blob, KEY)
    assert decoded == body and header.compression == compression


def test_non_finite_metrics_survive() -> None:
    blob = encode(facts(metrics={"a": {"log_loss": float("inf")}}), b"", SIGNER)
    assert decode(blob, KEY)[0].metrics["a"]["log_loss"] == float("inf")


def test_layout_matches_the_documented_spec() -> None:
    blob = encode(facts(), b"state", SIGNER)
    version, header, body = split(blob)
    assert blob.startswith(MAGIC) and version == 2
    assert zlib.decompress(body) == b"state"
    assert assemble(SIGNER, version, header, body) == blob  # Ed25519 is deterministic


def test_read_header_reads_only_the_prefix() -> None:
    blob = encode(facts(), bytes(100_000), SIGNER)
    file = io.BytesIO(blob)
    header, size = peek(file, KEY)
    assert header == decode(blob, KEY)[0] and size == len(blob)
    assert file.tell() < 2_000  # the body was never read
    prefix = blob[: file.tell()]
    assert read_header(prefix, KEY) == header
    with pytest.raises(TruncatedSnapshotError):
        read_header(prefix[:-1], KEY)
    with pytest.raises(BadSignatureError):
        read_header(prefix, OTHER.public)


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


def _header_at(blob: bytes) -> int:
    return blob.index(b'"version":42') + len(b'"version":4')


def _body_at(blob: bytes) -> int:
    header_len: int = struct.unpack_from(">I", blob, 10)[0]
    return 22 + header_len + SIG + 1


def _other_model(blob: bytes) -> bytes:
    return encode(facts(model="other"), split(blob)[2], SIGNER)


# (case, how to spoil a valid snapshot, the one error class it must raise)
SPOILED: list[tuple[str, Callable[[bytes], bytes], type[SnapshotRefusedError]]] = [
    ("header byte flipped", lambda b: _flip(b, _header_at(b)), BadSignatureError),
    ("preamble version flipped", lambda b: _flip(b, 9), BadSignatureError),
    ("body byte flipped", lambda b: _flip(b, _body_at(b)), BadSignatureError),
    ("signature flipped", lambda b: _flip(b, len(b) - 1), BadSignatureError),
    ("signed with another key", lambda b: resign(b, OTHER), BadSignatureError),
    ("signature stripped", lambda b: b[:-SIG], UnsignedSnapshotError),
    ("signature zeroed", lambda b: b[:-SIG] + bytes(SIG), UnsignedSnapshotError),
    ("empty file", lambda b: b"", TruncatedSnapshotError),
    ("cut in the magic", lambda b: b[:3], TruncatedSnapshotError),
    ("cut in the preamble", lambda b: b[:15], TruncatedSnapshotError),
    ("cut in the header", lambda b: b[:60], TruncatedSnapshotError),
    ("cut in the body", lambda b: b[: _body_at(b)], TruncatedSnapshotError),
    ("cut before the signature", lambda b: b[: -SIG - 1], TruncatedSnapshotError),
    ("cut in the signature", lambda b: b[:-1], TruncatedSnapshotError),
    ("garbage", lambda b: b"PK\x03\x04" + bytes(range(256)) * 8, CorruptSnapshotError),
    ("short garbage", lambda b: b"hello", CorruptSnapshotError),
    ("bytes after the signature", lambda b: b + b"\x00", CorruptSnapshotError),
    ("signed, body hash wrong", lambda b: resign(b, body_sha256="0" * 64), CorruptSnapshotError),
    ("signed, header not a header", lambda b: resign(b, model=None), CorruptSnapshotError),
    (
        "signed, header format disagrees",
        lambda b: resign(b, format_version=1),
        CorruptSnapshotError,
    ),
    ("signed, lengths disagree", lambda b: resign(b, raw_length=1), CorruptSnapshotError),
    (
        "signed, newer format version",
        lambda b: assemble(SIGNER, 3, {"v3": "a header v2 cannot parse"}, b"..."),
        IncompatibleVersionError,
    ),
    (
        "signed, other river series",
        lambda b: resign(b, libraries={"headrace": "0.1.0", "river": "0.19.0", "python": "3.11.7"}),
        IncompatibleVersionError,
    ),
    ("another model's snapshot", _other_model, WrongModelError),
    (
        "format 1, HMAC under a key readers held",
        lambda b: assemble_legacy(b"legacy-hmac-key-0123456789-abcdefgh", split(b)[1], split(b)[2]),
        LegacySnapshotError,
    ),
]


@pytest.mark.parametrize(
    ("spoil", "error"), [(s, e) for _, s, e in SPOILED], ids=[c for c, _, _ in SPOILED]
)
def test_refused_with_its_own_error_and_nothing_unpickled(
    evil_blob: bytes,
    marker: Path,
    spoil: Callable[[bytes], bytes],
    error: type[SnapshotRefusedError],
) -> None:
    spoiled = spoil(evil_blob)
    with pytest.raises(SnapshotRefusedError) as caught:
        restore(spoiled, expect_model="main")
    assert type(caught.value) is error, caught.value
    assert not marker.exists()


def test_the_payload_is_live_so_refusals_prove_something(evil_blob: bytes, marker: Path) -> None:
    decode(evil_blob, KEY)
    assert not marker.exists()  # decoding alone never unpickles
    restore(evil_blob)
    assert marker.read_text() == "code ran"


def test_the_snapshots_package_never_imports_a_deserializer() -> None:
    imported: set[str] = set()
    for path in Path(codec.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert not imported & {"pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}


def test_expected_variant() -> None:
    whole = encode(facts(), b"", SIGNER)
    assert decode(whole, KEY, expect_variant="a")[0].variant == "*"
    with pytest.raises(WrongModelError):
        decode(whole, KEY, expect_variant="c")
    one = encode(facts(variant="a", variants=("a",), n_learned={}, metrics={}), b"", SIGNER)
    with pytest.raises(WrongModelError):
        decode(one, KEY, expect_variant="b")


def test_library_check_can_be_overridden_by_an_operator() -> None:
    old = Libraries(headrace="0.1.0", river="0.19.0", python="3.11.1")
    blob = encode(facts(), b"x", SIGNER, libraries=old)
    with pytest.raises(IncompatibleVersionError, match=r"river 0\.19\.0"):
        decode(blob, KEY)
    assert decode(blob, KEY, check_libraries=False)[1] == b"x"


@pytest.mark.parametrize("model", ["../etc", "a/b", "", ".hidden", "x" * 65])
def test_model_names_must_be_safe_in_ids(model: str) -> None:
    with pytest.raises(ValidationError):
        facts(model=model)


def test_no_key_verifies_nothing() -> None:
    with pytest.raises(MissingKeyError):
        decode(encode(facts(), b"", SIGNER), ())


def test_settings_defaults() -> None:
    settings = SnapshotSettings()
    assert str(settings.snapshot_dir) == "snapshots-data"
    assert settings.snapshot_interval_s == 60
    assert (settings.snapshot_keep_last, settings.snapshot_keep_daily_days) == (10, 7)
    assert settings.snapshot_lkg_margin == 0.02 and settings.snapshot_keep_lkg is None
