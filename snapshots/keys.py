"""Ed25519 keys: the learner's signing key, and the verifying keys every reader holds.

Only the learner (and an operator's CLI given the key) can sign; the API and every other
reader hold public keys, which can verify but never sign. Text form, in settings and
files: base64 (standard or URL-safe, padding optional) of the 32 raw bytes (a signing
key's seed, a verifying key's point), or PEM (`openssl genpkey -algorithm ed25519`).

Refused wherever a key is accepted, retired keys included: anything but 32 bytes; a seed
that is printable text or has few distinct bytes (typed, not generated); the public
development keys; and verifying keys of small order, under which OpenSSL accepts forged
signatures (the all-zero key, the identity, ...).
"""

import base64
import binascii
import functools
import hashlib
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from snapshots.errors import WeakKeyError

KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
_MIN_DISTINCT_SEED_BYTES = 16
"""32 random bytes have about 30 distinct values; fewer than 16 is a pattern, not chance."""

DEV_KEY: Final = b"headrace-development-snapshot-key-NOT-A-SECRET"
"""The fixed development key of the HMAC era: public, so it proves nothing."""

# Key pairs anyone could derive from the published development key.
_DEV_SEEDS: Final = (DEV_KEY[:KEY_BYTES], hashlib.sha256(DEV_KEY).digest())

# Encodings of the points of small order (libsodium's list, sign bit masked): a signature
# under such a "public key" is forged without any secret, and OpenSSL accepts it.
_SMALL_ORDER: Final = frozenset(
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@functools.cache
def _dev_publics() -> frozenset[bytes]:
    return frozenset(
        _raw_public(Ed25519PrivateKey.from_private_bytes(seed).public_key()) for seed in _DEV_SEEDS
    )


def _decode(text: str, what: str) -> bytes:
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WeakKeyError(f"{what} is neither base64 nor PEM") from None
    if len(raw) < KEY_BYTES:
        raise WeakKeyError(f"{what} is shorter than {KEY_BYTES} bytes: not an Ed25519 key")
    if len(raw) != KEY_BYTES:
        raise WeakKeyError(f"{what} has {len(raw)} bytes; an Ed25519 key has {KEY_BYTES}")
    return raw


def encode_text(raw: bytes) -> str:
    """The text form of a raw key: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class VerifyKey:
    """A public key: verifies signatures, cannot make one."""

    __slots__ = ("_key", "key_id", "raw")

    def __init__(self, raw: bytes, what: str = "the verifying key") -> None:
        if len(raw) != KEY_BYTES:
            raise WeakKeyError(f"{what} has {len(raw)} bytes; an Ed25519 key has {KEY_BYTES}")
        if bytes([*raw[:31], raw[31] & 0x7F]) in _SMALL_ORDER:
            raise WeakKeyError(f"{what} is a point of small order: anyone can forge under it")
        if raw in _dev_publics():
            raise WeakKeyError(f"{what} is the public development key")
        self.raw = raw
        self._key = Ed25519PublicKey.from_public_bytes(raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]
        """A short, stable name of the key for logs and errors (not secret)."""

    @classmethod
    def parse(cls, text: str, what: str = "the verifying key") -> "VerifyKey":
        stripped = text.strip()
        if stripped.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_public_key(stripped.encode())
            except (ValueError, UnsupportedAlgorithm):
                raise WeakKeyError(f"{what} is not a PEM public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise WeakKeyError(f"{what} is a PEM key, but not an Ed25519 one")
            return cls(_raw_public(key), what)
        return cls(_decode(stripped, what), what)

    def verify(self, signature: bytes | memoryview, data: bytes | memoryview) -> bool:
        try:
            self._key.verify(bytes(signature), bytes(data))
        except InvalidSignature:
            return False
        return True

    @property
    def text(self) -> str:
        return encode_text(self.raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"VerifyKey({self.key_id})"


class SigningKey:
    """The learner's private key. Its repr never shows the secret."""

    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes, what: str = "the signing key") -> None:
        if len(seed) != KEY_BYTES:
            raise WeakKeyError(f"{what} has {len(seed)} bytes; an Ed25519 key has {KEY_BYTES}")
        if all(0x20 <= b < 0x7F for b in seed):
            raise WeakKeyError(f"{what} is printable text, not {KEY_BYTES} random bytes")
        if len(set(seed)) < _MIN_DISTINCT_SEED_BYTES:
            raise WeakKeyError(f"{what} has fewer than {_MIN_DISTINCT_SEED_BYTES} distinct bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = VerifyKey(_raw_public(self._key.public_key()), f"the public key of {what}")

    @classmethod
    def generate(cls) -> "SigningKey":
        while True:
            seed = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            try:
                return cls(seed)
            except WeakKeyError:  # about one draw in 10^14: draw again
                continue

    @classmethod
    def parse(cls, text: str, what: str = "the signing key") -> "SigningKey":
        stripped = text.strip()
        if stripped.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(stripped.encode(), password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                raise WeakKeyError(f"{what} is not an unencrypted PEM private key") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise WeakKeyError(f"{what} is a PEM key, but not an Ed25519 one")
            seed = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            return cls(seed, what)
        return cls(_decode(stripped, what), what)

    def sign(self, data: bytes | memoryview) -> bytes:
        return self._key.sign(bytes(data))

    @property
    def text(self) -> str:
        """The secret in its text form (for a key file); handle with care."""
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return encode_text(seed)

    def __repr__(self) -> str:
        return f"SigningKey(public {self.public.key_id})"


VerifyKeys = VerifyKey | tuple[VerifyKey, ...]
"""One key, or the keys a signature may be made with: the current one first, then the
previous ones still accepted while a rotation is under way."""


def as_tuple(keys: VerifyKeys) -> tuple[VerifyKey, ...]:
    return (keys,) if isinstance(keys, VerifyKey) else keys
