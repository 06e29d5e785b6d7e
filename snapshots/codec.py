"""The snapshot file format: sign and verify, compress and decompress; never unpickle.

Byte layout of format 2 (integers big-endian):

    offset              size         field
    0                   8            magic b"\\x89HRS\\r\\n\\x1a\\n"
    8                   2            format version (u16)
    10                  4            header length H (u32, at most 1 MiB)
    14                  8            body length B (u64)
    22                  H            header: UTF-8 JSON of SnapshotHeader
    22+H                64           header signature: Ed25519 over
                                     "headrace-snapshot-header\\0" + bytes [0, 22+H)
    86+H                B            body: the learner's bytes, zlib- or lzma-compressed
    86+H+B              64           file signature: Ed25519 over
                                     "headrace-snapshot-file\\0" + bytes [0, 86+H+B)

The learner signs with its private key; readers verify with public keys only, so no
reader can forge a snapshot. The file signature covers everything, so decode verifies
the whole file before it reads a single header field. The header signature lets a
listing verify the header from the file's first 86+H bytes, without reading the body.
This envelope is fixed from format 2 on; the version governs the header and the body, so
a newer file is verified first and then refused as incompatible, not as forged.

Format 1 had the same layout with 32-byte HMAC-SHA256 tags under a key every reader
held, the API included: anyone holding it could forge a snapshot. Such files are never
restored; `resign` moves the ones an operator vouches for to format 2.
"""

import hashlib
import hmac
import lzma
import struct
import zlib
from typing import IO, NamedTuple

from pydantic import ValidationError

from snapshots.errors import (
    BadSignatureError,
    CorruptSnapshotError,
    IncompatibleVersionError,
    LegacySnapshotError,
    MissingKeyError,
    TruncatedSnapshotError,
    UnsignedSnapshotError,
    WrongModelError,
)
from snapshots.keys import SIGNATURE_BYTES, SigningKey, VerifyKey, VerifyKeys, as_tuple
from snapshots.manifest import (
    FORMAT_VERSION,
    Compression,
    Libraries,
    SnapshotFacts,
    SnapshotHeader,
    runtime_libraries,
)

__all__ = [
    "SnapshotHeader",
    "decode",
    "encode",
    "peek",
    "read_header",
    "resign",
    "signed_with",
]

MAGIC = b"\x89HRS\r\n\x1a\n"  # like PNG's: catches 7-bit and newline-mangling transfers
LEGACY_VERSION = 1
LEGACY_MAC_SIZE = 32
MAX_HEADER_BYTES = 1 << 20
PREAMBLE = struct.Struct(">8sHIQ")
# Distinct labels, so that one signature never passes for the other.
_HEADER_LABEL = b"headrace-snapshot-header\x00"
_FILE_LABEL = b"headrace-snapshot-file\x00"


def _keys(key: VerifyKeys) -> tuple[VerifyKey, ...]:
    keys = as_tuple(key)
    if not keys:
        raise MissingKeyError()
    return keys


class _Frame(NamedTuple):
    version: int
    header_len: int
    body_len: int

    @property
    def sig_size(self) -> int:
        return LEGACY_MAC_SIZE if self.version == LEGACY_VERSION else SIGNATURE_BYTES

    @property
    def header_end(self) -> int:
        return PREAMBLE.size + self.header_len

    @property
    def prefix_size(self) -> int:
        return self.header_end + self.sig_size

    @property
    def total_size(self) -> int:
        return self.prefix_size + self.body_len + self.sig_size


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


def _refuse_legacy(frame: _Frame) -> None:
    if frame.version == LEGACY_VERSION:
        raise LegacySnapshotError(
            "format 1, signed with a shared HMAC key that readers held too; an operator "
            "re-signs the ones to keep with `headrace snapshot resign` "
            "(HEADRACE_SNAPSHOT_LEGACY_KEYS)"
        )


def _check_signature(
    found: memoryview, keys: tuple[VerifyKey, ...], label: bytes, data: memoryview, what: str
) -> VerifyKey:
    """The key whose signature of `data` is `found`; the refusal when none is."""
    if not any(found):
        raise UnsignedSnapshotError(f"the {what} signature is all zeros")
    message = label + data
    for key in keys:
        if key.verify(found, message):
            return key
    raise BadSignatureError(
        f"the {what} signature does not verify: tampered with, or signed with a key that "
        "is not accepted"
    )


def _parse_header(data: bytes | memoryview, frame: _Frame) -> SnapshotHeader:
    if frame.version not in (FORMAT_VERSION, LEGACY_VERSION):
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


def _verified_header(
    data: bytes | memoryview, frame: _Frame, keys: tuple[VerifyKey, ...]
) -> SnapshotHeader:
    _refuse_legacy(frame)
    view = memoryview(data)
    _check_signature(
        view[frame.header_end : frame.prefix_size],
        keys,
        _HEADER_LABEL,
        view[: frame.header_end],
        "header",
    )
    return _parse_header(view, frame)


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


def _assemble(header: SnapshotHeader, stored: bytes | memoryview, signer: SigningKey) -> bytes:
    header_json = header.model_dump_json().encode()
    if len(header_json) > MAX_HEADER_BYTES:
        raise ValueError(f"snapshot header of {len(header_json)} bytes exceeds {MAX_HEADER_BYTES}")
    out = bytearray(PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_json), len(stored)))
    out += header_json
    out += signer.sign(_HEADER_LABEL + out)
    out += stored
    out += signer.sign(_FILE_LABEL + out)
    return bytes(out)


def encode(
    facts: SnapshotFacts,
    body: bytes,
    signer: SigningKey,
    *,
    compression: Compression = "zlib",
    libraries: Libraries | None = None,
) -> bytes:
    """One signed snapshot file holding `body` (opaque bytes) described by `facts`."""
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
    return _assemble(header, stored, signer)


def _whole(blob: bytes) -> _Frame:
    frame = _frame(blob)
    if len(blob) == frame.total_size - frame.sig_size:
        raise UnsignedSnapshotError("the file ends where its signature should begin")
    if len(blob) < frame.total_size:
        raise TruncatedSnapshotError(f"{len(blob)} bytes of the {frame.total_size} it declares")
    if len(blob) > frame.total_size:
        raise CorruptSnapshotError(f"{len(blob) - frame.total_size} bytes after the signature")
    return frame


def _checked_body(
    view: memoryview,
    frame: _Frame,
    header: SnapshotHeader,
    expect_model: str | None,
    expect_variant: str | None,
    check_libraries: bool,
) -> bytes:
    problem = header.libraries.incompatibility(runtime_libraries())
    if check_libraries and problem:
        raise IncompatibleVersionError(problem)
    if expect_model is not None and header.model != expect_model:
        raise WrongModelError(f"a snapshot of model {header.model!r}, not {expect_model!r}")
    if expect_variant is not None and not header.holds(expect_variant):
        raise WrongModelError(f"holds variants {list(header.variants)}, not {expect_variant!r}")
    stored = view[frame.prefix_size : -frame.sig_size]
    if len(stored) != header.body_length or (
        hashlib.sha256(stored).hexdigest() != header.body_sha256
    ):
        raise CorruptSnapshotError("the body does not match its recorded length and SHA-256")
    return _decompress(stored, header)


def decode(
    blob: bytes,
    key: VerifyKeys,
    expect_model: str | None = None,
    expect_variant: str | None = None,
    *,
    check_libraries: bool = True,
) -> tuple[SnapshotHeader, bytes]:
    """The verified header and the decompressed body; a SnapshotRefusedError subclass otherwise.

    Checks, in order, before anything is decompressed: magic, lengths, format (a legacy
    HMAC file is refused), file signature, header signature, format version, header,
    library versions, model and variant, body length and SHA-256. The body is returned
    as bytes: unpickling is the caller's.
    """
    keys = _keys(key)
    frame = _whole(blob)
    _refuse_legacy(frame)
    view = memoryview(blob)
    signer = _check_signature(
        view[-frame.sig_size :], keys, _FILE_LABEL, view[: -frame.sig_size], "file"
    )
    header = _verified_header(view, frame, (signer,))
    body = _checked_body(view, frame, header, expect_model, expect_variant, check_libraries)
    return header, body


def peek(data: bytes | IO[bytes], key: VerifyKeys) -> tuple[SnapshotHeader, int]:
    """The verified header and the file size it declares, from the file's first bytes only.

    `data` is the file (or any prefix holding the header) or an open binary file
    positioned at its start, of which only the header's bytes are read.
    """
    keys = _keys(key)
    prefix = data if isinstance(data, bytes) else data.read(PREAMBLE.size)
    frame = _frame(prefix)
    if not isinstance(data, bytes):
        prefix += data.read(frame.prefix_size - len(prefix))
    _refuse_legacy(frame)
    if len(prefix) < frame.prefix_size:
        raise TruncatedSnapshotError(f"{len(prefix)} bytes; the header ends at {frame.prefix_size}")
    return _verified_header(prefix, frame, keys), frame.total_size


def read_header(data: bytes | IO[bytes], key: VerifyKeys) -> SnapshotHeader:
    """The verified header, without reading (or decompressing) the body."""
    return peek(data, key)[0]


def signed_with(blob: bytes, key: VerifyKey) -> bool:
    """Whether the whole file's signature is `key`'s (the file is not otherwise checked)."""
    try:
        frame = _whole(blob)
    except (CorruptSnapshotError, TruncatedSnapshotError, UnsignedSnapshotError):
        return False
    if frame.version == LEGACY_VERSION:
        return False
    view = memoryview(blob)
    return key.verify(view[-frame.sig_size :], _FILE_LABEL + view[: -frame.sig_size])


def _legacy_decode(blob: bytes, legacy: tuple[bytes, ...]) -> tuple[SnapshotHeader, memoryview]:
    """A format-1 file verified under one of the `legacy` HMAC keys: its header and body."""
    frame = _whole(blob)
    view = memoryview(blob)

    def check(found: memoryview, label: bytes, data: memoryview, what: str) -> None:
        if not any(found):
            raise UnsignedSnapshotError(f"the {what} signature is all zeros")
        for key in legacy:
            mac = hmac.new(key, label, hashlib.sha256)
            mac.update(data)
            if hmac.compare_digest(found, mac.digest()):
                return
        raise BadSignatureError(
            f"the {what} HMAC does not match any of HEADRACE_SNAPSHOT_LEGACY_KEYS"
        )

    if not legacy:
        raise MissingKeyError(
            "a format-1 (HMAC) snapshot: set HEADRACE_SNAPSHOT_LEGACY_KEYS to the key it was "
            "signed with to re-sign it"
        )
    check(view[-frame.sig_size :], _FILE_LABEL, view[: -frame.sig_size], "file")
    check(
        view[frame.header_end : frame.prefix_size],
        _HEADER_LABEL,
        view[: frame.header_end],
        "header",
    )
    header = _parse_header(view, frame)
    _checked_body(view, frame, header, None, None, check_libraries=False)
    return header, view[frame.prefix_size : -frame.sig_size]


def resign(
    blob: bytes,
    accepted: VerifyKeys,
    signer: SigningKey,
    *,
    legacy: tuple[bytes, ...] = (),
) -> bytes:
    """The same snapshot signed by `signer`, once it fully verifies under an `accepted` key
    (or, for a format-1 file, under a `legacy` HMAC key).

    The header and body stay as written (a format-1 header changes only its format
    version), so the snapshot's id, lineage, library versions and SHA-256 are those of
    the original.
    """
    frame = _frame(blob)
    if frame.version == LEGACY_VERSION:
        header, stored = _legacy_decode(blob, legacy)
        upgraded = header.model_copy(update={"format_version": FORMAT_VERSION})
        return _assemble(upgraded, stored, signer)
    decode(blob, accepted, check_libraries=False)
    out = bytearray(blob[: frame.header_end])
    out += signer.sign(_HEADER_LABEL + out)
    out += blob[frame.prefix_size : -frame.sig_size]
    out += signer.sign(_FILE_LABEL + out)
    return bytes(out)
