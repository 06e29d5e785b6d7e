"""What the learner process does besides learning: snapshots, cold starts, operator commands.

Kept apart from the loop (learner/worker.py), which hands it what it needs: the Redis
client, the shard's lease and store, the snapshots, and a way to publish.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from learner import control
from learner.epoch import Stamp
from learner.errors import LearnerError
from learner.layout import ShardKeys
from learner.lease import Lease
from learner.loop import Learner
from learner.recovery import LATEST, Snapshots
from learner.state import Committed, StateStore
from snapshots.errors import SnapshotError, SnapshotNotFoundError, StoreUnavailableError
from snapshots.manifest import SnapshotHeader

log = logging.getLogger("headrace.learner")


class OperatorDuties:
    """Snapshots and operator commands of one shard's active learner."""

    def __init__(
        self,
        client: redis.Redis,
        keys: ShardKeys,
        lease: Lease,
        store: StateStore,
        snapshots: Snapshots | None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.lease = lease
        self.store = store
        self.snapshots = snapshots
        self._last_snapshot = time.monotonic()
        self._snapshot_version = 0

    def load_shadows(self, learner: Learner) -> None:
        """The last-known-good models, for the rollback guard to score in shadow."""
        if self.snapshots is None or not learner.deciders:
            return
        try:
            learner.set_shadows(self.snapshots.last_known_good_models(self.keys.shard))
        except StoreUnavailableError as exc:
            # Without them the rollback guard has nothing to compare with until the next
            # last-known-good snapshot; that is no reason to stop learning.
            log.warning("shard %s: last-known-good models not loaded: %s", self.keys.shard, exc)

    def cold_start(self) -> Committed | None:
        """No state in Redis: restore the newest valid snapshot and replay from its offsets."""
        assert self.snapshots is not None and self.lease.token is not None
        try:
            stamp, header = self.snapshots.restore(
                self.client,
                self.keys,
                LATEST,
                lease_token=self.lease.token,
                replay=True,
                reason="cold start with an empty Redis",
            )
        except SnapshotNotFoundError:
            return None
        log.info(
            "shard %s: cold start from snapshot %s (%s)",
            self.keys.shard,
            header.snapshot_id,
            stamp,
        )
        return self.store.load()

    def snapshot_due(self, now: float, version: int) -> bool:
        """Every S seconds, if anything was published since the last snapshot."""
        if self.snapshots is None or self.snapshots.settings.snapshot_interval_s <= 0:
            return False
        if version in (0, self._snapshot_version):
            return False
        return now - self._last_snapshot >= self.snapshots.settings.snapshot_interval_s

    def snapshot_pending(self, version: int) -> bool:
        """Whether `version` was published and not snapshotted yet (at a clean stop)."""
        return self.snapshots is not None and version not in (0, self._snapshot_version)

    def scheduled_snapshot(self, learner: Learner | None) -> None:
        """A snapshot on the schedule or at a clean stop; a store that cannot be reached
        skips it (the state is safe in Redis) and the next interval tries again."""
        try:
            self.snapshot(learner)
        except StoreUnavailableError as exc:
            self._last_snapshot = time.monotonic()
            log.warning("shard %s: snapshot not taken: %s", self.keys.shard, exc)

    def snapshot(self, learner: Learner | None) -> SnapshotHeader:
        assert self.snapshots is not None
        header = self.snapshots.take(self.client, self.keys)
        self._last_snapshot = time.monotonic()
        self._snapshot_version = header.version
        if header.last_known_good and learner is not None:
            self.load_shadows(learner)
        log.info(
            "shard %s: snapshot %s%s",
            self.keys.shard,
            header.snapshot_id,
            " (last known good)" if header.last_known_good else "",
        )
        return header

    def _manual_rollback(
        self, learner: Learner, command: dict[str, Any], publish: Callable[[], Stamp]
    ) -> dict[str, Any]:
        if not learner.shadows and self.snapshots is not None:
            # Loaded here too when the rollback guard is off and nothing scores in shadow.
            learner.set_shadows(self.snapshots.last_known_good_models(self.keys.shard))
        wanted = command.get("variant") or list(learner.variants)
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        missing = [n for n in names if n not in learner.shadows]
        if missing:
            raise SnapshotNotFoundError(f"last known good model of {', '.join(missing)}")
        reason = str(command.get("reason") or "operator rollback")
        for name in names:
            learner.roll_back(name, reason)
        stamp = publish()
        return {"ok": True, "epoch": stamp.epoch, "version": stamp.version, "variants": names}

    def command(
        self, command: dict[str, Any], learner: Learner, publish: Callable[[], Stamp]
    ) -> Stamp | None:
        """Carry out one operator command; the new (epoch, version) when the state was
        replaced (a restore: the learner must reload it), else None."""
        op, command_id = command.get("op"), str(command.get("id"))
        result: dict[str, Any]
        replaced = None
        try:
            if self.snapshots is None:
                raise SnapshotError(
                    "snapshots are off for this learner (HEADRACE_SNAPSHOT_INTERVAL_S=0)"
                )
            if op == "snapshot":
                header = self.snapshot(learner)
                result = {"ok": True, "snapshot_id": header.snapshot_id, "version": header.version}
            elif op == "restore":
                assert self.lease.token is not None
                stamp, header = self.snapshots.restore(
                    self.client,
                    self.keys,
                    str(command.get("snapshot", LATEST)),
                    lease_token=self.lease.token,
                    replay=bool(command.get("replay", True)),
                    current=dict(learner.offsets),
                )
                result = {
                    "ok": True,
                    "snapshot_id": header.snapshot_id,
                    "epoch": stamp.epoch,
                    "version": stamp.version,
                }
                replaced = stamp
            elif op == "rollback":
                result = self._manual_rollback(learner, command, publish)
            else:
                result = {"ok": False, "error": f"unknown command {op!r}", "kind": "BadCommand"}
        except (SnapshotError, LearnerError) as exc:
            # LearnerError: e.g. state in Redis that no longer verifies is never snapshotted.
            result = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        control.put_result(self.client, self.keys, command_id, result)
        log.info(
            "shard %s: command %s: %s", self.keys.shard, op, "ok" if result["ok"] else "refused"
        )
        return replaced
