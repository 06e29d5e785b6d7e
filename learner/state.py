"""The shard's committed state in Redis, published atomically and fenced.

One publish is one MULTI/EXEC under WATCH of the shard's lease: the models,
the learner's core (metrics, join counters, watermark), the changed pending
joins, the new event-id hashes, the changed online aggregates, the offsets
they all reflect, the state's (epoch, version) (learner/epoch.py), the alerts
raised and a point of the metrics history. If the lease changed hands since
this learner took it, EXEC fails and nothing is written; if the state in Redis
is no longer the one this learner last wrote or loaded (Redis lost its last
writes), nothing is written either: the learner must load what is there.

The state hash is signed as it is written and verified as it is read (learner/signing.py):
a `Committed` only ever holds bytes the learner's key signed for this shard and version.
"""

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from guards.alerts import Alert
from learner import alertstore, history
from learner.aggregates import HashWriter
from learner.epoch import NO_STATE, Stamp, next_epoch
from learner.errors import FencedError, StateMovedError
from learner.joins import Pending
from learner.layout import (
    CORE,
    META,
    OFFSETS,
    SIG,
    ShardKeys,
    decode_meta,
    decode_offsets,
    read_meta,
    read_stamp,
    state_fields,
    variant_of,
    version_announcement,
    versions_channel,
)
from learner.signing import Seal
from snapshots.keys import VerifyKey


@dataclass(frozen=True, slots=True)
class Committed:
    """What a publish wrote, as read back by a learner taking over or restarting."""

    version: int
    offsets: dict[int, int]
    """Partition → next offset to read."""
    meta: dict[str, Any]
    core: bytes
    models: dict[str, bytes]
    pending: dict[str, Pending]
    seen_chunks: list[bytes]
    signed_by: VerifyKey | None = None
    """The key whose signature the state verified under."""
    epoch: int = 0

    @property
    def stamp(self) -> Stamp:
        return Stamp(self.epoch, self.version)


@dataclass(slots=True)
class Delta:
    """Everything one publish writes."""

    offsets: dict[int, int]
    meta: dict[str, Any]
    core: bytes
    models: dict[str, bytes]
    pending_upserts: dict[str, bytes] = field(default_factory=dict)
    pending_deletes: list[str] = field(default_factory=list)
    seen_chunk: bytes | None = None
    seen_drop: int = 0
    aggregates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    history: dict[str, Any] | None = None
    """A point of the metrics history (learner/history.py), or None for this publish."""
    history_cap: int = 20_000
    """About how many points the history stream keeps."""
    new_epoch: bool = False
    """Start a new epoch with this publish (a takeover, a rollback: learner/epoch.py)."""


class StateStore:
    """Reads and publishes one shard's state."""

    def __init__(
        self, client: redis.Redis, keys: ShardKeys, lease_ttl_ms: int, seal: Seal | None = None
    ) -> None:
        self._client = client
        self.keys = keys
        self._lease_ttl_ms = lease_ttl_ms
        self._hashes = HashWriter(client)
        self._seal = seal if seal is not None else Seal(())

    def version(self) -> int:
        return self.stamp().version

    def stamp(self) -> Stamp:
        """The stored state's (epoch, version); NO_STATE when there is none."""
        return read_stamp(self._client, self.keys)

    def load_meta(self) -> dict[str, Any] | None:
        return read_meta(self._client, self.keys)

    def load(self) -> Committed | None:
        """The committed state, or None when this shard has never published.

        learner.errors.UnverifiedStateError, before anything is deserialized, when the
        state's signature does not verify under an accepted key."""
        raw = self._client.hgetall(self.keys.state)
        if not raw:
            return None
        state = self._seal.verify(raw, self.keys)
        pending_raw = self._client.hgetall(self.keys.pending)
        seen = self._client.lrange(self.keys.seen, 0, -1)
        models = {
            variant: state.field(name)
            for name in state.digests
            if (variant := variant_of(name)) is not None
        }
        offsets = decode_offsets(state.field(OFFSETS))
        pending = {k.decode(): Pending.decode(k.decode(), v) for k, v in pending_raw.items()}
        return Committed(
            version=state.version,
            offsets=offsets,
            meta=decode_meta(state.field(META)),
            core=state.field(CORE),
            models=models,
            pending=pending,
            seen_chunks=list(seen),
            signed_by=state.signed_by,
            epoch=state.epoch,
        )

    def publish(self, lease_token: str, delta: Delta, *, after: Stamp | None = None) -> Stamp:
        """Write `delta` as the next version, if `lease_token` still owns the shard and, with
        `after`, the stored state is still `after` (what this learner last wrote or loaded):
        else learner.errors.FencedError (StateMovedError for the second)."""
        keys = self.keys
        with fenced_version(
            self._client, keys, lease_token, "publish", new_epoch=delta.new_epoch, expect=after
        ) as (pipe, stamp):
            version = stamp.version
            meta = {
                **delta.meta,
                "epoch": stamp.epoch,
                "version": version,
                "published_at": time.time(),
            }
            fields = state_fields(stamp, delta.offsets, meta, delta.core, delta.models)
            fields[SIG] = self._seal.seal(keys, version, fields)
            pipe.hset(keys.state, mapping=fields)
            if delta.pending_upserts:
                pipe.hset(keys.pending, mapping=delta.pending_upserts)
            if delta.pending_deletes:
                pipe.hdel(keys.pending, *delta.pending_deletes)
            if delta.seen_chunk is not None:
                pipe.rpush(keys.seen, delta.seen_chunk)
                if delta.seen_drop:
                    pipe.ltrim(keys.seen, delta.seen_drop, -1)
            self._hashes.write(pipe, delta.aggregates)
            alertstore.append(pipe, keys.prefix, delta.alerts)
            if delta.history is not None:
                history.append(pipe, keys, {**delta.history, "version": version}, delta.history_cap)
            pipe.pexpire(keys.lease, self._lease_ttl_ms)
        return stamp


@contextmanager
def fenced_version(
    client: redis.Redis,
    keys: ShardKeys,
    lease_token: str,
    action: str,
    *,
    new_epoch: bool = False,
    expect: Stamp | None = None,
) -> Iterator[tuple[Any, Stamp]]:
    """A MULTI pipeline and the shard's next (epoch, version), committed only if
    `lease_token` still owns the shard when it executes (WATCH of the lease); the stamp is
    announced on the versions channel with it.

    The version is the stored one plus one. The epoch is the stored one, or a new one
    (learner/epoch.py) with `new_epoch` or when the shard holds no state. With `expect`,
    the stored stamp must be that one: StateMovedError otherwise."""
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.lease)
            if pipe.get(keys.lease) != lease_token.encode():
                raise FencedError(f"shard {keys.shard}: lease lost, cannot {action}")
            stored = read_stamp(pipe, keys)
            if expect is not None and stored != expect:
                raise StateMovedError(keys.shard, expect, stored)
            fresh = new_epoch or stored == NO_STATE
            epoch = next_epoch(stored.epoch) if fresh else stored.epoch
            stamp = Stamp(epoch, stored.version + 1)
            pipe.multi()
            yield pipe, stamp
            pipe.publish(versions_channel(keys.prefix), version_announcement(keys, stamp))
            pipe.execute()
        except redis.WatchError as exc:
            raise FencedError(f"shard {keys.shard}: lease changed, cannot {action}") from exc
