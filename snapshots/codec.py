"""The snapshot file format: sign and verify, compress and decompress; never unpickle.

Byte layout (integers big-endian):

    offset              size         field
    0                   8            magic b"\\x89HRS\\r\\n\\x1a\\n"
    8                   2            format version (u16)
    10                  4            header length H (u32, at most 1 MiB)
    14                  8            body length B (u64)
    22                  H            header: UTF-8 JSON of SnapshotHeader
    22+H                32           header MAC: HMAC-SHA256(key, "headrace-snapshot-header\\0"
                                     + bytes [0, 22+H))
    54+H                B            body: the learner's bytes, zlib- or lzma-compressed
    54+H+B              32           file MAC: HMAC-SHA256(key, "headrace-snapshot-file\\0"
                                     + bytes [0, 54+H+B))

The file MAC covers everything, so decode verifies the whole file before it
reads a single header field. The header MAC lets a listing verify the header
from the file's first 54+H bytes, without reading the body. This envelope is
fixed for all format versions; the version governs the header and the body, so
a newer file is verified first and then refused as incompatible, not as forged.
"""

import hashlib
import hmac
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from typing import IO, NamedTuple

from pydantic import ValidationError

from snapshots.errors import (
    BadSignatureError,
    CorruptSnapshotError,
    IncompatibleVersionError,
    MissingKeyError,
    TruncatedSnapshotError,
    UnsignedSnapshotError,
    WrongModelError,
)
from snapshots.manifest import (
    FORMAT_VERSION,
    Compression,
    Libraries,
    SnapshotFacts,
    SnapshotHeader,
    runtime_libraries,
)
from snapshots.settings import SnapshotSettings

__all__ = [
    "Keys",
    "SnapshotCodec",
    "SnapshotHeader",
    "decode",
    "encode",
    "peek",
    "read_header",
    "resign",
    "signed_with",
]

MAGIC = b"\x89HRS\r\n\x1a\n"  # like PNG's: catches 7-bit and newline-mangling transfers
MAC_SIZE = 32
MAX_HEADER_BYTES = 1 << 20
PREAMBLE = struct.Struct(">8sHIQ")
# Distinct labels, so that one MAC never passes for the other.
_HEADER_LABEL = b"headrace-snapshot-header\x00"
_FILE_LABEL = b"headrace-snapshot-file\x00"
_NO_SIGNATURE = bytes(MAC_SIZE)

Keys = bytes | tuple[bytes, ...]
"""One key, or the keys a snapshot may be signed with: the current one first, then the
previous ones still accepted while a key rotation is under way. Signing uses one key."""


def _keys(key: Keys) -> tuple[bytes, ...]:
    keys = (key,) if isinstance(key, bytes) else key
    if not keys or not all(keys):
        raise MissingKeyError("the key is empty")
    return keys


class _Frame(NamedTuple):
    version: int
    header_len: int
    body_len: int

    @property
    def header_end(self) -> int:
        return PREAMBLE.size + self.header_len

    @property
    def prefix_size(self) -> int:
        return self.header_end + MAC_SIZE

    @property
    def total_size(self) -> int:
        return self.prefix_size + self.body_len + MAC_SIZE


def _mac(key: bytes, label: bytes, data: bytes | bytearray | memoryview) -> bytes:
    mac = hmac.new(key, label, hashlib.sha256)
    mac.update(data)
    return mac.digest()


def _require_key(key: bytes) -> None:
    if not key:
        raise MissingKeyError("the key is empty")


def _frame(data: bytes | memoryview) -> _Frame:
    probe = bytes(data[: len(MAGIC)])
    if probe != MAGIC[: len(probe)]:
        raise CorruptSnapshotError("not a headrace snapshot (bad magic bytes)")
    if len(data) < PREAMBLE.size:
        raise TruncatedSnapshotError(f"{len(data)} bytes, shorter than the fixed preamble")
    _, format_version, header_len, body_len = PREAMBLE.unpack_from(data)
    if header_len > MAX_HEADER_BYTES:
        raise CorruptSnapshotError(f"header length {header_len} exceeds {MAX_HEADER_BYTES}")
    return _Frame(format_version, header_len, body_len)


def _check_mac(
    found: bytes | memoryview, keys: tuple[bytes, ...], label: bytes, data: memoryview, what: str
) -> bytes:
    """The key whose MAC of `data` is `found`; the refusal when none is."""
    if found == _NO_SIGNATURE:
        raise UnsignedSnapshotError(f"the {what} signature is all zeros")
    for key in keys:
        if hmac.compare_digest(found, _mac(key, label, data)):
            return key
    raise BadSignatureError(
        f"the {what} signature does not match: tampered with, or signed under another key"
    )


def _verified_header(data: bytes | memoryview, frame: _Frame, key: Keys) -> SnapshotHeader:
    view = memoryview(data)
    _check_mac(
        view[frame.header_end : frame.prefix_size],
        _keys(key),
        _HEADER_LABEL,
        view[: frame.header_end],
        "header",
    )
    if frame.version != FORMAT_VERSION:
        raise IncompatibleVersionError(
            f"format version {frame.version}; this headrace reads version {FORMAT_VERSION}"
        )
    try:
        header = SnapshotHeader.model_validate_json(bytes(data[PREAMBLE.size : frame.header_end]))
    except ValidationError as exc:
        raise CorruptSnapshotError(f"undecodable header: {exc.errors()[0]['msg']}") from None
    if header.format_version != frame.version or header.body_length != frame.body_len:
        raise CorruptSnapshotError("the header disagrees with the preamble")
    return header


def _compress(raw: bytes, compression: Compression) -> bytes:
    return zlib.compress(raw, 6) if compression == "zlib" else lzma.compress(raw)


def _decompress(stored: memoryview, header: SnapshotHeader) -> bytes:
    # The bound stops a (signed, so buggy rather than hostile) body from inflating past its size.
    limit = header.raw_length + 1
    try:
        if header.compression == "zlib":
            inflate = zlib.decompressobj()
            raw, done = inflate.decompress(stored, limit), inflate.eof
        else:
            unxz = lzma.LZMADecompressor()
            raw, done = unxz.decompress(stored, limit), unxz.eof
    except (zlib.error, lzma.LZMAError) as exc:
        raise CorruptSnapshotError(f"the body does not decompress: {exc}") from None
    if not done or len(raw) != header.raw_length:
        raise CorruptSnapshotError("the decompressed body does not have its recorded length")
    return raw


def encode(
    facts: SnapshotFacts,
    body: bytes,
    key: bytes,
    *,
    compression: Compression = "zlib",
    libraries: Libraries | None = None,
) -> bytes:
    """One signed snapshot file holding `body` (opaque bytes) described by `facts`."""
    _require_key(key)
    stored = _compress(body, compression)
    header = SnapshotHeader.model_validate(
        facts.model_dump()
        | {
            "snapshot_id": facts.snapshot_id,
            "format_version": FORMAT_VERSION,
            "libraries": libraries or runtime_libraries(),
            "compression": compression,
            "body_length": len(stored),
            "raw_length": len(body),
            "body_sha256": hashlib.sha256(stored).hexdigest(),
        }
    )
    header_json = header.model_dump_json().encode()
    if len(header_json) > MAX_HEADER_BYTES:
        raise ValueError(f"snapshot header of {len(header_json)} bytes exceeds {MAX_HEADER_BYTES}")
    out = bytearray(PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_json), len(stored)))
    out += header_json
    out += _mac(key, _HEADER_LABEL, out)
    out += stored
    out += _mac(key, _FILE_LABEL, out)
    return bytes(out)


def decode(
    blob: bytes,
    key: Keys,
    expect_model: str | None = None,
    expect_variant: str | None = None,
    *,
    check_libraries: bool = True,
) -> tuple[SnapshotHeader, bytes]:
    """The verified header and the decompressed body; a SnapshotRefusedError subclass otherwise.

    Checks, in order, before anything is decompressed: magic, lengths, file signature,
    header signature, format version, header, library versions, model and variant,
    body length and SHA-256. The body is returned as bytes: unpickling is the caller's.
    """
    keys = _keys(key)
    frame = _frame(blob)
    if len(blob) == frame.total_size - MAC_SIZE:
        raise UnsignedSnapshotError("the file ends where its signature should begin")
    if len(blob) < frame.total_size:
        raise TruncatedSnapshotError(f"{len(blob)} bytes of the {frame.total_size} it declares")
    if len(blob) > frame.total_size:
        raise CorruptSnapshotError(f"{len(blob) - frame.total_size} bytes after the signature")
    view = memoryview(blob)
    signer = _check_mac(view[-MAC_SIZE:], keys, _FILE_LABEL, view[:-MAC_SIZE], "file")
    header = _verified_header(view, frame, signer)
    problem = header.libraries.incompatibility(runtime_libraries())
    if check_libraries and problem:
        raise IncompatibleVersionError(problem)
    if expect_model is not None and header.model != expect_model:
        raise WrongModelError(f"a snapshot of model {header.model!r}, not {expect_model!r}")
    if expect_variant is not None and not header.holds(expect_variant):
        raise WrongModelError(f"holds variants {list(header.variants)}, not {expect_variant!r}")
    stored = view[frame.prefix_size : -MAC_SIZE]
    if len(stored) != header.body_length or (
        hashlib.sha256(stored).hexdigest() != header.body_sha256
    ):
        raise CorruptSnapshotError("the body does not match its recorded length and SHA-256")
    return header, _decompress(stored, header)


def peek(data: bytes | IO[bytes], key: Keys) -> tuple[SnapshotHeader, int]:
    """The verified header and the file size it declares, from the file's first bytes only.

    `data` is the file (or any prefix holding the header) or an open binary file
    positioned at its start, of which only the header's bytes are read.
    """
    _keys(key)
    prefix = data if isinstance(data, bytes) else data.read(PREAMBLE.size)
    frame = _frame(prefix)
    if not isinstance(data, bytes):
        prefix += data.read(frame.prefix_size - len(prefix))
    if len(prefix) < frame.prefix_size:
        raise TruncatedSnapshotError(f"{len(prefix)} bytes; the header ends at {frame.prefix_size}")
    return _verified_header(prefix, frame, key), frame.total_size


def read_header(data: bytes | IO[bytes], key: Keys) -> SnapshotHeader:
    """The verified header, without reading (or decompressing) the body."""
    return peek(data, key)[0]


def signed_with(blob: bytes, key: bytes) -> bool:
    """Whether the whole file's signature is `key`'s (the file is not otherwise checked)."""
    if len(blob) < PREAMBLE.size + 2 * MAC_SIZE:
        return False
    view = memoryview(blob)
    return hmac.compare_digest(view[-MAC_SIZE:], _mac(key, _FILE_LABEL, view[:-MAC_SIZE]))


def resign(blob: bytes, accepted: Keys, key: bytes) -> bytes:
    """The same snapshot signed with `key`, once it fully verifies under an `accepted` key.

    Only the two MACs change: header and body bytes stay as written, so the snapshot's
    id, lineage, library versions and SHA-256 are those of the original.
    """
    _require_key(key)
    decode(blob, accepted, check_libraries=False)
    frame = _frame(blob)
    out = bytearray(blob[: frame.header_end])
    out += _mac(key, _HEADER_LABEL, out)
    out += blob[frame.prefix_size : -MAC_SIZE]
    out += _mac(key, _FILE_LABEL, out)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class SnapshotCodec:
    """The format bound to one key, as each process's composition root builds it."""

    key: bytes = field(repr=False)
    compression: Compression = "zlib"

    def __post_init__(self) -> None:
        _require_key(self.key)

    @classmethod
    def from_settings(cls, settings: SnapshotSettings) -> "SnapshotCodec":
        """MissingKeyError without a key, unless development mode allows the fixed dev key."""
        return cls(settings.signing_key(), settings.snapshot_compression)

    def encode(self, facts: SnapshotFacts, body: bytes) -> bytes:
        return encode(facts, body, self.key, compression=self.compression)

    def decode(
        self,
        blob: bytes,
        expect_model: str | None = None,
        expect_variant: str | None = None,
        *,
        check_libraries: bool = True,
    ) -> tuple[SnapshotHeader, bytes]:
        return decode(blob, self.key, expect_model, expect_variant, check_libraries=check_libraries)

    def read_header(self, data: bytes | IO[bytes]) -> SnapshotHeader:
        return read_header(data, self.key)
