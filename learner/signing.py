"""Signatures over a shard's state in Redis: the learner signs what it publishes, and every
reader verifies before anything is deserialized.

Redis is storage, not a trusted party. Whoever can write to it could otherwise plant a
pickle in `core` or `model:<variant>` that runs code in the API or in a restarting
learner. So every publish adds one field, `sig`: a JSON record naming the key prefix,
the shard, the version, the SHA-256 of every field the publish wrote, and an Ed25519
signature over all of it. Only the learner holds the private key; readers hold public
keys and can verify, never sign.

What one signature binds, and why:

- the key prefix and the shard: a state cannot be copied into another deployment that
  shares the Redis (and the key), nor into another shard;
- the version: a blob of version 7 cannot pass for version 9's, so no older model is
  slipped under a newer version number;
- each field by its name (`core`, `model:main`, ...): a model cannot move to another
  variant's slot, nor into `core`;
- every field of the publish together (version, offsets, meta, core, every model): all
  of one publish, or none of it.

The epoch (learner/epoch.py) is one of the fields, so it is signed like the others: a
writer cannot lift an old state above a newer one by raising its epoch.

What it cannot stop: a writer putting back a whole older state, all its fields and its
signature together. That state was genuine; the API never goes back to an (epoch,
version) lower than the one it serves, and the learner resumes from it as it would after
Redis lost its last writes, under a new epoch. Pending joins, seen event ids, online
aggregates, alerts and the metrics history are JSON, integers and floats, never
unpickled: a writer can skew them, not run code. The Redis password is what keeps
writers out (docs/operations.md, "What is trusted, and why").
"""

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from learner.errors import UnverifiedStateError
from learner.layout import EPOCH, SIG, VERSION, ShardKeys
from snapshots.errors import NoSigningKeyError
from snapshots.keys import SigningKey, VerifyKey

_LABEL = b"headrace-state\x00"
_ALG = "ed25519"


def _message(keys: ShardKeys, version: int, digests: Mapping[str, str]) -> bytes:
    body = {"prefix": keys.prefix, "shard": keys.shard, "version": version, "fields": digests}
    return _LABEL + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def seal(signer: SigningKey, keys: ShardKeys, version: int, fields: Mapping[str, bytes]) -> bytes:
    """The `sig` field's value for a publish of `fields` (each as stored) as `version`."""
    digests = {name: _digest(value) for name, value in fields.items() if name != SIG}
    if digests.get(VERSION) != _digest(str(version).encode()):
        raise ValueError("the fields must hold the version they are signed as")
    signature = signer.sign(_message(keys, version, digests))
    record = {
        "alg": _ALG,
        "key": signer.public.key_id,
        "prefix": keys.prefix,
        "shard": keys.shard,
        "version": version,
        "fields": digests,
        "signature": base64.b64encode(signature).decode(),
    }
    return orjson.dumps(record)


@dataclass(frozen=True, slots=True)
class VerifiedState:
    """A state hash whose signature verified: only the fields it covers can be read."""

    keys: ShardKeys
    version: int
    signed_by: VerifyKey
    digests: dict[str, str]
    """Field name → SHA-256 (hex) of its value, as signed."""
    raw: Mapping[bytes, bytes]

    @property
    def epoch(self) -> int:
        """The signed epoch; 0 for a state signed before epochs existed."""
        return int(self.field(EPOCH)) if EPOCH in self.digests else 0

    def digest(self, name: str) -> str | None:
        """The signed SHA-256 of field `name`, or None when the signature does not cover it."""
        return self.digests.get(name)

    def field(self, name: str) -> bytes:
        """Field `name`'s bytes, checked against the signature; UnverifiedStateError else."""
        want = self.digests.get(name)
        if want is None:
            raise self._refused(f"field {name!r} is not covered by the signature")
        value = self.raw.get(name.encode())
        if value is None:
            raise self._refused(f"field {name!r} is missing")
        if _digest(value) != want:
            raise self._refused(f"field {name!r} was changed after it was signed")
        return value

    def fields(self) -> dict[bytes, bytes]:
        """Every covered field, checked, and the signature record: a verified dump."""
        out = {name.encode(): self.field(name) for name in self.digests}
        out[SIG.encode()] = self.raw[SIG.encode()]
        return out

    def _refused(self, why: str) -> UnverifiedStateError:
        return UnverifiedStateError(self.keys.shard, self.version, why)


def verify(
    raw: Mapping[bytes, bytes], keys: ShardKeys, accepted: tuple[VerifyKey, ...]
) -> VerifiedState:
    """Check the state hash `raw` (HGETALL of keys.state) was signed for this prefix, shard
    and version by an accepted key; UnverifiedStateError with the reason otherwise.

    Fields are checked against their signed SHA-256 when read (`VerifiedState.field`), so
    a reader pays only for the fields it uses."""
    version_raw = raw.get(VERSION.encode())
    try:
        version = int(version_raw) if version_raw is not None else None
    except ValueError:
        version = None

    def refused(why: str) -> UnverifiedStateError:
        return UnverifiedStateError(keys.shard, version, why)

    record_raw = raw.get(SIG.encode())
    if record_raw is None:
        raise refused("it carries no signature (written by something other than a learner)")
    record = _record(record_raw)
    if record is None:
        raise refused("its signature record is malformed")
    if (record["prefix"], record["shard"]) != (keys.prefix, keys.shard):
        raise refused(
            f"it was signed for shard {record['shard']!r} under prefix {record['prefix']!r}"
        )
    if version is None or record["version"] != version:
        raise refused(f"it was signed as version {record['version']}, not {version}")
    key = next((k for k in accepted if k.key_id == record["key"]), None)
    if key is None:
        accepted_ids = ", ".join(k.key_id for k in accepted) or "none"
        raise refused(
            f"it was signed with key {record['key']}, which is not accepted "
            f"(accepted: {accepted_ids}; HEADRACE_VERIFY_KEY, HEADRACE_VERIFY_PREVIOUS_KEYS)"
        )
    digests: dict[str, str] = record["fields"]
    if not key.verify(record["signature"], _message(keys, version, digests)):
        raise refused(f"its signature does not verify under key {key.key_id}")
    state = VerifiedState(keys, version, key, digests, raw)
    state.field(VERSION)
    return state


def _record(raw: bytes) -> dict[str, Any] | None:
    """The parsed signature record, with the types checked, or None."""
    try:
        record = orjson.loads(raw)
        signature = base64.b64decode(record["signature"], validate=True)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, ValueError):
        return None
    if not isinstance(record, dict) or record.get("alg") != _ALG:
        return None
    fields = record.get("fields")
    typed = (
        isinstance(record.get("key"), str)
        and isinstance(record.get("prefix"), str)
        and isinstance(record.get("shard"), str)
        and type(record.get("version")) is int
        and isinstance(fields, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    )
    if not typed:
        return None
    record["signature"] = signature
    return record


@dataclass(frozen=True, slots=True)
class Seal:
    """The keys one process signs and verifies shard state with.

    A learner has its signing key (and verifies with its public key, or the keys of a
    rotation); the API and other readers have `accepted` only."""

    accepted: tuple[VerifyKey, ...]
    signer: SigningKey | None = None

    @classmethod
    def of(cls, signer: SigningKey, accepted: tuple[VerifyKey, ...] = ()) -> "Seal":
        return cls(accepted or (signer.public,), signer)

    def seal(self, keys: ShardKeys, version: int, fields: Mapping[str, bytes]) -> bytes:
        if self.signer is None:
            raise NoSigningKeyError("this process verifies state; only a learner signs it")
        return seal(self.signer, keys, version, fields)

    def verify(self, raw: Mapping[bytes, bytes], keys: ShardKeys) -> VerifiedState:
        return verify(raw, keys, self.accepted)
