"""The whole of a shard's committed state, out of Redis and back in.

A dump is what a snapshot's body holds: the state hash (models, core, meta,
offsets), the pending joins, the seen event ids and every online aggregate
of the shard, so that a restore into an empty Redis computes exactly the
same features. Reading needs no writer meanwhile: the learner dumps right
after its own publish, or the caller holds the shard's lease.

A dump holds only state whose signature verified (nothing a Redis writer planted is
ever signed into a snapshot), and writing one back signs it again for its new version:
both need the learner's keys (learner/signing.py).
"""

import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from learner.epoch import Stamp
from learner.errors import StateError
from learner.layout import (
    EPOCH,
    META,
    OFFSETS,
    SIG,
    VERSION,
    ShardKeys,
    decode_meta,
    decode_offsets,
    encode_offsets,
)
from learner.signing import Seal
from learner.state import fenced_version

_BATCH = 500


@dataclass(slots=True)
class ShardDump:
    state: dict[bytes, bytes]
    pending: dict[bytes, bytes] = field(default_factory=dict)
    seen: list[bytes] = field(default_factory=list)
    aggregates: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    """Key relative to the shard's base ("u:<user>", "i:<item>") → hash."""

    @property
    def version(self) -> int:
        return int(self.state[VERSION.encode()])

    @property
    def meta(self) -> dict[str, Any]:
        return decode_meta(self.state[META.encode()])

    @property
    def offsets(self) -> dict[int, int]:
        return decode_offsets(self.state[OFFSETS.encode()])

    def to_bytes(self) -> bytes:
        return pickle.dumps(
            (self.state, self.pending, self.seen, self.aggregates), protocol=pickle.HIGHEST_PROTOCOL
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> "ShardDump":
        """Only ever call this on a body whose snapshot signature was verified."""
        state, pending, seen, aggregates = pickle.loads(body)
        return cls(state, pending, seen, aggregates)


def dump_shard(client: redis.Redis, keys: ShardKeys, seal: Seal) -> ShardDump:
    """Read everything the shard has committed; the state hash's signature verified."""
    state = client.hgetall(keys.state)
    if not state:
        raise StateError(f"shard {keys.shard} has no committed state to dump")
    dump = ShardDump(
        state=seal.verify(state, keys).fields(),
        pending=dict(client.hgetall(keys.pending)),
        seen=list(client.lrange(keys.seen, 0, -1)),
    )
    names = [k.decode() for k in client.scan_iter(match=keys.aggregate_pattern, count=1000)]
    for start in range(0, len(names), _BATCH):
        chunk = names[start : start + _BATCH]
        pipe = client.pipeline(transaction=False)
        for name in chunk:
            pipe.hgetall(name)
        for name, values in zip(chunk, pipe.execute(), strict=True):
            dump.aggregates[keys.relative(name)] = dict(values)
    return dump


def write_shard(
    client: redis.Redis,
    keys: ShardKeys,
    dump: ShardDump,
    seal: Seal,
    *,
    lease_token: str,
    offsets: dict[int, int],
    lineage: dict[str, Any],
) -> Stamp:
    """Replace the shard's state with `dump` as a new version of a new epoch (whatever the
    stored state, the restored one must be followed: learner/epoch.py); fenced like a
    publish."""
    old_aggregates = list(client.scan_iter(match=keys.aggregate_pattern, count=1000))
    with fenced_version(client, keys, lease_token, "restore", new_epoch=True) as (pipe, stamp):
        version = stamp.version
        offsets_json = encode_offsets(offsets)
        meta = {
            **dump.meta,
            "epoch": stamp.epoch,
            "version": version,
            "offsets": orjson.loads(offsets_json),
            "lineage": lineage,
            "published_at": time.time(),
        }
        # The snapshot's signature vouched for the dump; this one vouches for the new version.
        fields = {k.decode(): v for k, v in dump.state.items() if k != SIG.encode()}
        fields[EPOCH] = str(stamp.epoch).encode()
        fields[VERSION] = str(version).encode()
        fields[META] = orjson.dumps(meta)
        fields[OFFSETS] = offsets_json
        fields[SIG] = seal.seal(keys, version, fields)
        state = {k.encode(): v for k, v in fields.items()}
        pipe.delete(keys.state, keys.pending, keys.seen, *old_aggregates)
        pipe.hset(keys.state, mapping=state)
        if dump.pending:
            pipe.hset(keys.pending, mapping=dump.pending)
        if dump.seen:
            pipe.rpush(keys.seen, *dump.seen)
        for name, values in dump.aggregates.items():
            if values:
                pipe.hset(keys.aggregate(name), mapping=values)
    return stamp
