"""What an operator asks of a shard (take a snapshot, restore one), from the API or the CLI.

When a learner owns the shard, the request becomes a command it carries out
between two polls, so nothing races its publishes. When none does, a caller
holding the learner's signing key (an operator's CLI) takes the shard's lease
for the moment it needs and acts itself; a caller without it (the API, which
holds verifying keys only) is refused: taking or restoring a snapshot signs.
"""

from collections.abc import Callable
from typing import Any

import redis

from learner import control
from learner.errors import LearnerError, OperationError
from learner.layout import ShardKeys, read_offsets
from learner.lease import Lease, default_owner_id
from learner.recovery import Snapshots
from snapshots.errors import SnapshotError
from snapshots.store import load

_OPERATOR_LEASE_MS = 30_000


def take_snapshot(
    client: redis.Redis, keys: ShardKeys, snapshots: Snapshots, timeout_s: float = 30
) -> dict[str, Any]:
    def direct(token: str) -> dict[str, Any]:
        del token
        header = snapshots.take(client, keys)
        return {"ok": True, "snapshot_id": header.snapshot_id, "version": header.version}

    return _run(
        client, keys, "snapshot", {}, direct, timeout_s, can_act=snapshots.signer is not None
    )


def restore_snapshot(
    client: redis.Redis,
    keys: ShardKeys,
    snapshots: Snapshots,
    ref: str,
    *,
    replay: bool,
    timeout_s: float = 30,
) -> dict[str, Any]:
    """Restore snapshot `ref` (an id, "latest" or "last_known_good") as a new version.

    The snapshot is resolved and fully verified here first, with verifying keys alone: a
    missing, foreign or tampered one is refused before any learner is asked (a
    snapshots.errors.SnapshotError, not an OperationError)."""
    snapshot_id = snapshots.resolve(ref, keys.shard)
    load(snapshots.store, snapshot_id, snapshots.accepted, expect_model=keys.shard)

    def direct(token: str) -> dict[str, Any]:
        current = read_offsets(client, keys)
        stamp, header = snapshots.restore(
            client, keys, snapshot_id, lease_token=token, replay=replay, current=current
        )
        return {
            "ok": True,
            "snapshot_id": header.snapshot_id,
            "epoch": stamp.epoch,
            "version": stamp.version,
        }

    args = {"snapshot": snapshot_id, "replay": replay}
    return _run(
        client, keys, "restore", args, direct, timeout_s, can_act=snapshots.signer is not None
    )


def _run(
    client: redis.Redis,
    keys: ShardKeys,
    op: str,
    args: dict[str, Any],
    direct: Callable[[str], dict[str, Any]],
    timeout_s: float,
    *,
    can_act: bool,
) -> dict[str, Any]:
    if not can_act and not client.exists(keys.lease):
        raise OperationError(
            f"no learner owns shard {keys.shard}, and this process holds no signing key: "
            f"the {op} is carried out by the running learner; start one (headrace learn), or "
            "run `headrace snapshot` where HEADRACE_SIGNING_KEY_FILE is set",
            "NoLearner",
        )
    if client.exists(keys.lease):
        command_id = control.send(client, keys, op, **args)
        result = control.wait_result(client, keys, command_id, timeout_s)
        if result is None:
            if control.withdraw(client, keys, command_id):
                raise OperationError(
                    f"the learner owning shard {keys.shard} did not take the command within "
                    f"{timeout_s:.0f} s",
                    "LearnerBusy",
                )
            result = control.wait_result(client, keys, command_id, timeout_s)
            if result is None:
                raise OperationError(
                    "the learner took the command, but no result came", "LearnerBusy"
                )
    else:
        lease = Lease(client, keys, _OPERATOR_LEASE_MS, owner_id=f"operator:{default_owner_id()}")
        if not lease.try_acquire():
            raise OperationError(f"a learner just took shard {keys.shard}; retry", "LearnerBusy")
        try:
            assert lease.token is not None
            result = direct(lease.token)
        except (SnapshotError, LearnerError) as exc:
            result = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        finally:
            lease.release()
    if not result.get("ok"):
        raise OperationError(str(result.get("error")), str(result.get("kind", "Refused")))
    return result


def roll_back(
    client: redis.Redis,
    keys: ShardKeys,
    *,
    variant: str | None,
    reason: str,
    timeout_s: float = 30,
) -> dict[str, Any]:
    """Have the owning learner serve its last-known-good model again (one variant or all).

    Only a running learner can: it holds the last-known-good models it scores in shadow,
    and keeps learning from the rolled-back one.
    """
    if not client.exists(keys.lease):
        raise OperationError(
            f"no learner owns shard {keys.shard}: a rollback is carried out by the running "
            "learner; start one (headrace learn), or restore last_known_good instead",
            "NoLearner",
        )
    command_id = control.send(client, keys, "rollback", variant=variant, reason=reason)
    result = control.wait_result(client, keys, command_id, timeout_s)
    if result is None:
        control.withdraw(client, keys, command_id)
        raise OperationError(
            f"the learner owning shard {keys.shard} did not answer within {timeout_s:.0f} s",
            "LearnerBusy",
        )
    if not result.get("ok"):
        raise OperationError(str(result.get("error")), str(result.get("kind", "Refused")))
    return result
