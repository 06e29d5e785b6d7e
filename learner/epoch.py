"""Which line of versions a shard's state belongs to: states compare by (epoch, version).

A version grows by one with every publish, but the number alone can go back, and the same
number can come to name two different states: a Redis that failed over to a replica that
missed the last writes, or came back from its append-only file without its last second,
or came back empty and was restored from a snapshot, holds an older version than the API
replicas serve, and the learner continues the numbering from there. So every state also
carries an epoch, and the learner starts a new one, higher than any before, whenever the
line of versions may have forked:

- a learner takes the shard over (a standby after the owner died, a restart, an owner that
  found the state in Redis is not the one it last wrote or loaded);
- a snapshot is restored, and a model is rolled back to last known good;
- the first publish into a shard that holds no state.

A new epoch is the larger of one more than the stored epoch and the wall clock in
milliseconds (`next_epoch`). What that guarantees:

- within what Redis holds, (epoch, version) only grows: the new epoch exceeds the stored
  one, and within an epoch the version grows by one per publish;
- an epoch that Redis lost (it was written, maybe seen by an API replica, then lost with
  the last writes) is still exceeded by the next one, as long as the clocks of the hosts
  that take epochs (learners, and an operator's CLI restoring a snapshot) do not run
  behind each other by more than the time between the lost epoch's start and the new
  one's. Redis takes seconds to fail over or restart and the learner's lease must expire
  first; NTP keeps clocks within milliseconds;
- a state written before epochs existed reads as epoch 0: older than any epoch taken since.

What it does not guarantee: a host whose clock runs seconds behind may take an epoch
below a lost one. Replicas then keep the newer-numbered model they serve until the
learner publishes past it, and say so (`/ready`'s `rewound`, docs/api.md).
"""

import time
from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Stamp:
    """(epoch, version) of a published state, ordered lexicographically."""

    epoch: int
    version: int

    @classmethod
    def parse(cls, epoch: bytes | str | None, version: bytes | str | None) -> "Stamp":
        """From the state hash's fields; NO_STATE when there is no version (no state)."""
        if version is None:
            return NO_STATE
        return cls(int(epoch) if epoch is not None else 0, int(version))

    def __str__(self) -> str:
        return f"epoch {self.epoch} version {self.version}" if self.version else "no state"


NO_STATE = Stamp(0, 0)
"""The stamp of a shard with no state: lower than any published one."""


def next_epoch(stored: int, now: float | None = None) -> int:
    """An epoch above `stored` and, clocks permitting, above any taken before `now`."""
    at = time.time() if now is None else now
    return max(stored + 1, int(at * 1000))
