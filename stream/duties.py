"""What the learner process does besides learning: snapshots, cold starts, operator commands.

A mixin of `stream.consumer.ShardWorker`, kept apart so that module stays the loop.
"""

import logging
import time
from typing import Any

import redis

from learner.epoch import Stamp
from learner.errors import LearnerError
from learner.keys import ShardKeys
from learner.loop import Learner
from learner.state import Committed, StateStore
from snapshots.errors import SnapshotError, SnapshotNotFoundError
from snapshots.manifest import SnapshotHeader
from stream import control
from stream.lease import Lease
from stream.recovery import LATEST, Snapshots

log = logging.getLogger("headrace.learner")


class OperatorDuties:
    """Snapshots and commands of a ShardWorker; the attributes are the worker's."""

    client: redis.Redis
    keys: ShardKeys
    lease: Lease
    store: StateStore
    learner: Learner | None
    snapshots: Snapshots | None
    stamp: Stamp
    _last_snapshot: float
    _snapshot_version: int

    def publish(self) -> int:
        raise NotImplementedError

    def _load_shadows(self, learner: Learner) -> None:
        """The last-known-good models, for the rollback guard to score in shadow."""
        if self.snapshots is None or not learner.deciders:
            return
        learner.set_shadows(self.snapshots.last_known_good_models(self.keys.shard))

    def _cold_start(self) -> Committed | None:
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

    def _manual_rollback(self, learner: Learner, command: dict[str, Any]) -> dict[str, Any]:
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
        version = self.publish()
        return {"ok": True, "epoch": self.stamp.epoch, "version": version, "variants": names}

    def _snapshot_due(self, now: float) -> bool:
        """Every S seconds, if anything was published since the last snapshot."""
        if self.snapshots is None or self.snapshots.settings.snapshot_interval_s <= 0:
            return False
        if self.stamp.version in (0, self._snapshot_version):
            return False
        return now - self._last_snapshot >= self.snapshots.settings.snapshot_interval_s

    def _snapshot(self) -> SnapshotHeader:
        assert self.snapshots is not None
        header = self.snapshots.take(self.client, self.keys)
        self._last_snapshot = time.monotonic()
        self._snapshot_version = header.version
        if header.last_known_good and self.learner is not None:
            self._load_shadows(self.learner)
        log.info(
            "shard %s: snapshot %s%s",
            self.keys.shard,
            header.snapshot_id,
            " (last known good)" if header.last_known_good else "",
        )
        return header

    def _command(self, command: dict[str, Any], learner: Learner) -> bool:
        """Carry out one operator command; True when the state was replaced."""
        op, command_id = command.get("op"), str(command.get("id"))
        result: dict[str, Any]
        reload = False
        try:
            if self.snapshots is None:
                raise SnapshotError(
                    "snapshots are off for this learner (HEADRACE_SNAPSHOT_INTERVAL_S=0)"
                )
            if op == "snapshot":
                header = self._snapshot()
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
                self.stamp = stamp  # reloaded as this process's own state, epoch kept
                result = {
                    "ok": True,
                    "snapshot_id": header.snapshot_id,
                    "epoch": stamp.epoch,
                    "version": stamp.version,
                }
                reload = True
            elif op == "rollback":
                result = self._manual_rollback(learner, command)
            else:
                result = {"ok": False, "error": f"unknown command {op!r}", "kind": "BadCommand"}
        except (SnapshotError, LearnerError) as exc:
            # LearnerError: e.g. state in Redis that no longer verifies is never snapshotted.
            result = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        control.put_result(self.client, self.keys, command_id, result)
        log.info(
            "shard %s: command %s: %s", self.keys.shard, op, "ok" if result["ok"] else "refused"
        )
        return reload
