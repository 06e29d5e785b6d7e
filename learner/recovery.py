"""Snapshots of a shard's committed state, and restoring one into Redis.

`Snapshotter.take` runs in the owning learner right after a publish, so the
state it reads is exactly the state and offsets of that one moment.
`restore` verifies a snapshot before anything in it is deserialized, then
writes it as a new version, signed again and fenced by the caller's lease.
Both sign, so both need the learner's private key: a process holding only
verifying keys (the API) lists and verifies snapshots, and leaves taking and
restoring them to the learner (learner/operations.py).
"""

import math
import time
from dataclasses import dataclass
from typing import Any

import redis

from learner.epoch import NO_STATE, Stamp
from learner.layout import ShardKeys, read_stamp, variant_of
from learner.signing import Seal
from learner.statedump import ShardDump, dump_shard, write_shard
from snapshots.codec import encode
from snapshots.errors import NoSigningKeyError, SnapshotNotFoundError
from snapshots.keys import SigningKey, VerifyKey
from snapshots.location import open_store
from snapshots.manifest import SnapshotFacts, SnapshotHeader, passes_lkg_gate
from snapshots.retention import RetentionPolicy, apply
from snapshots.settings import SigningSettings, SnapshotSettings
from snapshots.store import SnapshotStore, last_known_good, latest, load, save

LATEST = "latest"
LAST_KNOWN_GOOD = "last_known_good"
_MIN_LEARNED_FOR_LKG = 100
"""A model that has learned less than this is not known to be good at anything."""


@dataclass
class Snapshots:
    """The snapshot store, the keys and the policy, as one learner or operator uses them."""

    settings: SnapshotSettings
    store: SnapshotStore
    accepted: tuple[VerifyKey, ...]
    """The keys snapshots and state are verified with (the current one, then previous ones)."""
    signer: SigningKey | None = None
    """The key new snapshots and restored state are signed with; None in a process that
    only verifies (the API): it cannot take or restore a snapshot by itself."""

    @classmethod
    def from_settings(cls, settings: SnapshotSettings, signing: SigningSettings) -> "Snapshots":
        """MissingKeyError when no verifying key (nor signing key) is configured."""
        accepted = signing.verify_keys()
        signer = signing.signer() if signing.has_signer else None
        return cls(settings, open_store(settings, accepted), accepted, signer)

    @property
    def seal(self) -> Seal:
        return Seal(self.accepted, self.signer)

    def _signer(self, action: str) -> SigningKey:
        if self.signer is None:
            raise NoSigningKeyError(f"needed to {action}")
        return self.signer

    def resolve(self, ref: str, model: str) -> str:
        """A snapshot id from an id, "latest" or "last_known_good"."""
        if ref == LATEST:
            info = latest(self.store, model)
        elif ref == LAST_KNOWN_GOOD:
            info = last_known_good(self.store, model)
        else:
            return ref
        if info is None:
            raise SnapshotNotFoundError(f"{ref} of {model}")
        return info.snapshot_id

    def last_known_good_models(self, model: str) -> dict[str, Any]:
        """Each variant's model in the newest last-known-good snapshot ({} when none)."""
        # Here, not at the top: River takes seconds to import, and the operator's snapshot
        # commands (list, create, restore) never unpickle a model.
        from learner import modelcodec

        info = last_known_good(self.store, model)
        if info is None:
            return {}
        _, body = load(self.store, info.snapshot_id, self.accepted, expect_model=model)
        dump = ShardDump.from_bytes(body)  # verified by load
        return {
            variant: modelcodec.loads(v)
            for k, v in dump.state.items()
            if (variant := variant_of(k.decode())) is not None
        }

    def take(self, client: redis.Redis, keys: ShardKeys) -> SnapshotHeader:
        """Snapshot the shard's committed state now; mark it last known good if it passes."""
        signer = self._signer("sign a snapshot")
        dump = dump_shard(client, keys, self.seal)
        meta = dump.meta
        variants = meta["variants"]
        facts = SnapshotFacts(
            model=keys.shard,
            variants=tuple(variants),
            version=dump.version,
            offsets=dump.offsets,
            n_learned={name: v["n_learned"] for name, v in variants.items()},
            metrics={
                name: {k: float(x) for k, x in v["metrics"].items() if _finite(x)}
                for name, v in variants.items()
            },
            last_known_good=self._passes_gate(keys.shard, variants),
        )
        blob = encode(
            facts, dump.to_bytes(), signer, compression=self.settings.snapshot_compression
        )
        header = save(self.store, blob, signer.public)
        if header.last_known_good:
            self.store.mark_last_known_good(header.snapshot_id)
        apply(self.store, RetentionPolicy.from_settings(self.settings))
        return header

    def _passes_gate(self, model: str, variants: dict[str, Any]) -> bool:
        previous = last_known_good(self.store, model)
        for name, variant in variants.items():
            if variant["n_learned"] < _MIN_LEARNED_FOR_LKG:
                return False
            # None: no example scored in the window yet, nothing to judge the model by.
            loss = variant["metrics"].get("rolling_log_loss")
            loss = math.inf if loss is None else float(loss)
            before = previous.header.metrics.get(name, {}) if previous is not None else {}
            if not passes_lkg_gate(
                loss, before.get("rolling_log_loss"), self.settings.snapshot_lkg_margin
            ):
                return False
        return True

    def restore(
        self,
        client: redis.Redis,
        keys: ShardKeys,
        ref: str,
        *,
        lease_token: str,
        replay: bool,
        current: dict[int, int] | None = None,
        reason: str = "operator restore",
    ) -> tuple[Stamp, SnapshotHeader]:
        """Write snapshot `ref` to Redis as a new version of a new epoch; return its stamp
        and the snapshot's header.

        With `replay`, the state resumes from the snapshot's offsets, so the events
        since are learned again; without it, from `current` (the events since are
        skipped, and the lineage says which).
        """
        self._signer("sign the restored state")
        snapshot_id = self.resolve(ref, keys.shard)
        header, body = load(self.store, snapshot_id, self.accepted, expect_model=keys.shard)
        dump = ShardDump.from_bytes(body)  # verified above: signature, hash, model
        parent = read_stamp(client, keys)
        lineage: dict[str, Any] = {
            "parent_version": parent.version or None,
            "parent_epoch": parent.epoch if parent != NO_STATE else None,
            "restored_from": snapshot_id,
            "snapshot_version": header.version,
            "replay": replay,
            "reason": reason,
            "at": time.time(),
        }
        offsets = dict(header.offsets)
        if not replay and current:
            lineage["skipped"] = {
                str(p): [offsets.get(p, 0), o] for p, o in current.items() if o > offsets.get(p, 0)
            }
            offsets = {**offsets, **current}
        stamp = write_shard(
            client, keys, dump, self.seal, lease_token=lease_token, offsets=offsets, lineage=lineage
        )
        return stamp, header


def _finite(value: Any) -> bool:
    """A number a snapshot header can hold (a metric may be None: undefined)."""
    return isinstance(value, int | float) and math.isfinite(value)
