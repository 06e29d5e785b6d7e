"""Which shard's model answers a user, and which of its variants.

Both are pure functions of the user id, so a user gets the same shard and variant from
every replica, before and after restarts: the shard as the learner sees it (Kafka's
partitioner on the user id key), the variant by blake2b (Python's hash() of a str is
salted per process).
"""

import hashlib
from collections.abc import Mapping

from stream.shards import parse_shards, shard_for_user, shard_names

__all__ = ["ShardRouter", "TrafficSplit", "bucket", "shard_names", "user_tag"]

_SPLIT_PERSON = b"hr-traffic"
_LOG_PERSON = b"hr-log-user"
_SCALE = float(1 << 64)


def bucket(user_id: str) -> float:
    """A stable number in [0, 1) for `user_id`."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, person=_SPLIT_PERSON).digest()
    return int.from_bytes(digest, "big") / _SCALE


def user_tag(user_id: str) -> str:
    """What logs say instead of a user id: a keyed-by-purpose hash, not reversible by lookup
    tables built for plain hashes."""
    return hashlib.blake2b(user_id.encode(), digest_size=6, person=_LOG_PERSON).hexdigest()


class TrafficSplit:
    """Users to variants by share: '{"main": 0.9, "tree": 0.1}'; empty: the first variant."""

    def __init__(self, shares: Mapping[str, float]) -> None:
        total = sum(shares.values())
        self._bounds: list[tuple[float, str]] = []
        running = 0.0
        for name, share in shares.items():
            if share <= 0:
                continue
            running += share / total
            self._bounds.append((running, name))
        self.names = [name for _, name in self._bounds]

    def variant_for(self, user_id: str) -> str | None:
        """The user's variant, or None for "the shard's first variant"."""
        bounds = self._bounds
        if not bounds:
            return None
        if len(bounds) == 1:
            return bounds[0][1]
        point = bucket(user_id)
        for bound, name in bounds:
            if point < bound:
                return name
        # Rounding can leave the last bound a hair under 1.0.
        return bounds[-1][1]

    def share_of(self, name: str) -> float:
        previous = 0.0
        for bound, candidate in self._bounds:
            if candidate == name:
                return bound - previous
            previous = bound
        return 0.0


class ShardRouter:
    """User id to shard name, as the learner partitions events (HEADRACE_SHARDS)."""

    def __init__(self, spec: str, n_partitions: int | None) -> None:
        names = shard_names(spec)
        self.single = names[0] if len(names) == 1 else None
        self.n_partitions = n_partitions
        # ShardConfigError (a stream error) when the spec does not cover the partitions.
        self._shards = parse_shards(spec, n_partitions) if n_partitions else None

    @property
    def routable(self) -> bool:
        return self.single is not None or self._shards is not None

    def shard_for(self, user_id: str) -> str | None:
        if self.single is not None:
            return self.single
        if self._shards is None or self.n_partitions is None:
            return None
        return shard_for_user(user_id, self._shards, self.n_partitions)
