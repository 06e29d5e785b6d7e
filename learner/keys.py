"""Names of every Redis key a shard's state occupies; the learner, API and snapshots share them."""

from dataclasses import dataclass


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
        """Hash: version, generation, offsets, meta, core blob, model:<variant> blobs."""
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

    def user(self, user_id: str) -> str:
        return f"{self.base}:u:{user_id}"

    def item(self, item_id: str) -> str:
        return f"{self.base}:i:{item_id}"

    @property
    def aggregate_pattern(self) -> str:
        """SCAN pattern matching the user and item aggregate hashes (for snapshots)."""
        return f"{self.base}:[ui]:*"


def versions_channel(prefix: str) -> str:
    """Pub/sub channel announcing every newly published state version."""
    return f"{prefix}:versions"
