"""The Redis layout: every key headrace writes, the state hash's fields, and reading them.

One module owns it; the learner, the API, the operator's commands, status and the
snapshot code all go through it. Every key of a shard starts with `<prefix>:shard:<name>`
(`ShardKeys.base`): were Redis Cluster chosen, a hash tag around that part (`{...}`)
would keep a shard's keys, which one transaction writes together, in one slot, and
this is the one place to add it.

The state hash (`ShardKeys.state`) holds one publish: `epoch` and `version` (decimals:
states compare by the two, learner/epoch.py), `offsets`
(JSON: partition -> next offset), `meta` (JSON: what the API and operators read),
`core` (the learner's pickled core), `model:<variant>` (each variant's model) and
`sig` (the signature over all of them, learner/signing.py). The JSON fields can be read
without verifying anything; the pickles only after their signature verified.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from learner.epoch import Stamp

EPOCH = "epoch"
"""State field: the line of versions this publish belongs to (learner/epoch.py); a state
written before epochs has none and reads as epoch 0."""
VERSION = "version"
"""State field: the version of this publish, one more than the state it follows."""
STAMP_FIELDS = (EPOCH, VERSION)
"""The fields that identify a published state, in `Stamp` order."""
OFFSETS = "offsets"
"""State field: JSON object, partition (a string) -> the next offset to read."""
META = "meta"
"""State field: JSON object, the facts the API and operators read (variants, metrics,
offsets, lineage, topology, published_at)."""
CORE = "core"
"""State field: the learner's core (metrics, joins' counters, guards), pickled."""
SIG = "sig"
"""State field: the signature record over every other field (learner/signing.py)."""
MODEL_PREFIX = "model:"
"""State fields `model:<variant>`: each variant's model, pickled."""


def model_field(variant: str) -> str:
    """The state field holding `variant`'s model."""
    return f"{MODEL_PREFIX}{variant}"


def variant_of(field: str) -> str | None:
    """The variant whose model state field `field` holds, or None for another field."""
    return field[len(MODEL_PREFIX) :] if field.startswith(MODEL_PREFIX) else None


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """Keys of one shard under a deployment's prefix."""

    prefix: str
    shard: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:shard:{self.shard}"

    @property
    def state(self) -> str:
        """Hash: version, offsets, meta, core, model:<variant> blobs, sig."""
        return f"{self.base}:state"

    @property
    def pending(self) -> str:
        """Hash: impression_id → pending join (or a tombstone of a recently closed one)."""
        return f"{self.base}:pending"

    @property
    def seen(self) -> str:
        """List of chunks of 64-bit event-id hashes, oldest first (duplicate detection)."""
        return f"{self.base}:seen"

    @property
    def lease(self) -> str:
        """String owner|generation with a TTL: who may publish this shard's state."""
        return f"{self.base}:lease"

    @property
    def generation(self) -> str:
        """Counter of leases granted: the fencing token."""
        return f"{self.base}:generation"

    @property
    def history(self) -> str:
        """Stream of metric points, one per publish at most (the dashboard's charts), capped."""
        return f"{self.base}:history"

    @property
    def control(self) -> str:
        """List of operator commands (restore, rollback) for the owning learner."""
        return f"{self.base}:control"

    def control_result(self, command_id: str) -> str:
        """String: the owning learner's answer to one operator command."""
        return f"{self.control}:result:{command_id}"

    def user(self, user_id: str) -> str:
        return f"{self.base}:u:{user_id}"

    def item(self, item_id: str) -> str:
        return f"{self.base}:i:{item_id}"

    @property
    def aggregate_pattern(self) -> str:
        """SCAN pattern matching the user and item aggregate hashes (for snapshots)."""
        return f"{self.base}:[ui]:*"

    def aggregate(self, relative: str) -> str:
        """The key of an aggregate hash named relative to the shard (`u:<user>`, `i:<item>`)."""
        return f"{self.base}:{relative}"

    def relative(self, key: str) -> str:
        """The inverse of `aggregate`: a shard's key without its base."""
        return key[len(self.base) + 1 :]


def versions_channel(prefix: str) -> str:
    """Pub/sub channel announcing every newly published state version."""
    return f"{prefix}:versions"


def alerts_key(prefix: str) -> str:
    """Stream of the deployment's alerts (learner/alertstore.py)."""
    return f"{prefix}:alerts"


# -- reading the state hash --------------------------------------------------------------


def encode_offsets(offsets: Mapping[int, int]) -> bytes:
    """The `offsets` field's value, partitions in order."""
    return orjson.dumps({str(p): o for p, o in sorted(offsets.items())})


def decode_offsets(raw: bytes | str | Mapping[str, Any]) -> dict[int, int]:
    """Partition -> next offset, from the `offsets` field (or meta's copy of it)."""
    found = raw if isinstance(raw, Mapping) else orjson.loads(raw)
    return {int(p): int(o) for p, o in found.items()}


def parse_version(raw: bytes | str | None) -> int | None:
    """The `version` field's value as a number; None when there is no state."""
    return int(raw) if raw is not None else None


def read_version(client: redis.Redis, keys: ShardKeys) -> int | None:
    """The published version, or None when the shard has no state."""
    return parse_version(client.hget(keys.state, VERSION))


def stamp_of(raw: Mapping[bytes, bytes]) -> Stamp:
    """The (epoch, version) a state hash (HGETALL) says it is, unverified; NO_STATE for none."""
    return Stamp.parse(raw.get(EPOCH.encode()), raw.get(VERSION.encode()))


def read_stamp(client: Any, keys: ShardKeys) -> Stamp:
    """The stored (epoch, version), unverified (a cue to load and verify); NO_STATE when
    the shard has no state. `client` may be a pipeline in its immediate (WATCH) mode."""
    epoch, version = client.hmget(keys.state, STAMP_FIELDS)
    return Stamp.parse(epoch, version)


def read_stamps(client: redis.Redis, shards: list[ShardKeys]) -> list[Stamp]:
    """Each shard's stored (epoch, version) (NO_STATE: no state), in one round trip."""
    with client.pipeline(transaction=False) as pipe:
        for keys in shards:
            pipe.hmget(keys.state, STAMP_FIELDS)
        return [Stamp.parse(epoch, version) for epoch, version in pipe.execute()]


def read_offsets(client: redis.Redis, keys: ShardKeys) -> dict[int, int]:
    """The committed offsets ({} without state). JSON only: nothing is deserialized, and
    nothing verified either; whoever acts on them as state reads the state verified."""
    raw = client.hget(keys.state, OFFSETS)
    return decode_offsets(raw) if raw is not None else {}


def read_meta(client: redis.Redis, keys: ShardKeys) -> dict[str, Any] | None:
    """The published meta (JSON, unverified), or None when the shard has no state."""
    raw = client.hget(keys.state, META)
    return decode_meta(raw) if raw is not None else None


def decode_meta(raw: bytes | str) -> dict[str, Any]:
    meta: dict[str, Any] = orjson.loads(raw)
    return meta


def queue_summary(pipe: Any, keys: ShardKeys) -> None:
    """Queue, on a pipeline, the reads `summary` decodes: the stamp and the meta."""
    pipe.hmget(keys.state, [*STAMP_FIELDS, META])


def summary(reply: Sequence[bytes | None]) -> tuple[Stamp, dict[str, Any]]:
    """The (epoch, version) (NO_STATE: no state) and the meta ({}) from `queue_summary`'s
    reply."""
    epoch, version, meta = reply
    return Stamp.parse(epoch, version), decode_meta(meta) if meta is not None else {}


def state_fields(
    stamp: Stamp,
    offsets: Mapping[int, int],
    meta: Mapping[str, Any],
    core: bytes | None,
    models: Mapping[str, bytes],
) -> dict[str, bytes]:
    """The state hash's fields of one publish, unsigned (the caller adds `sig`)."""
    fields: dict[str, bytes] = {
        EPOCH: str(stamp.epoch).encode(),
        VERSION: str(stamp.version).encode(),
        OFFSETS: encode_offsets(offsets),
        META: orjson.dumps(dict(meta)),
    }
    if core is not None:
        fields[CORE] = core
    fields.update({model_field(name): blob for name, blob in models.items()})
    return fields


def version_announcement(keys: ShardKeys, stamp: Stamp) -> bytes:
    """What the versions channel carries for a new state of `keys`' shard."""
    return orjson.dumps({"shard": keys.shard, "epoch": stamp.epoch, "version": stamp.version})


def parse_announcement(data: object) -> tuple[str, Stamp] | None:
    """(shard, stamp) from a versions channel message, or None for anything else. A message
    without an epoch comes from a learner older than epochs: epoch 0."""
    try:
        message = orjson.loads(data) if isinstance(data, bytes | str) else {}
        return str(message["shard"]), Stamp(int(message.get("epoch", 0)), int(message["version"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
