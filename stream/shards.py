"""Which partitions of `events` each model shard owns, and which shard a user belongs to.

The topology is configuration (HEADRACE_SHARDS): `main=*` (the default) is one
shard over every partition; `a=0,1;b=2` splits three partitions between two
shards, each with its own model and its own active learner.

Users are placed as Kafka's default partitioner places their records (Java's murmur2 of
the key): the API routes with `shard_for_user`, and the learner counts the records that
a producer put elsewhere (`RoutingCheck`), since those reach a shard the API never asks.
"""

from kafka.partitioner.default import murmur2

from stream.errors import StreamError


class ShardConfigError(StreamError):
    """HEADRACE_SHARDS does not describe a partition of the topic's partitions."""


def shard_names(spec: str) -> list[str]:
    """The shard names of HEADRACE_SHARDS (`main=*`, `a=0,1;b=2`), in order."""
    names = [part.partition("=")[0].strip() for part in spec.split(";") if part.strip()]
    return [name for name in names if name]


def parse_shards(spec: str, n_partitions: int) -> dict[str, list[int]]:
    """Shard name → its partitions; every partition belongs to exactly one shard."""
    shards: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, members = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ShardConfigError(f"shard spec {part!r} is not name=partitions")
        if members.strip() == "*":
            partitions = list(range(n_partitions))
        else:
            try:
                partitions = [int(m) for m in members.split(",") if m.strip()]
            except ValueError as exc:
                raise ShardConfigError(f"shard {name}: partitions must be numbers") from exc
        for p in partitions:
            if not 0 <= p < n_partitions:
                raise ShardConfigError(f"shard {name}: partition {p} not in 0..{n_partitions - 1}")
            if p in owner:
                raise ShardConfigError(f"partition {p} is in shards {owner[p]} and {name}")
            owner[p] = name
        shards[name] = partitions
    missing = sorted(set(range(n_partitions)) - set(owner))
    if missing:
        raise ShardConfigError(f"partitions {missing} belong to no shard in {spec!r}")
    return shards


def partition_for_key(key: bytes, n_partitions: int) -> int:
    """The partition Kafka's default partitioner sends `key` to (Java-compatible murmur2)."""
    return int(murmur2(key) & 0x7FFFFFFF) % n_partitions


def shard_for_user(user_id: str, shards: dict[str, list[int]], n_partitions: int) -> str:
    partition = partition_for_key(user_id.encode(), n_partitions)
    for name, partitions in shards.items():
        if partition in partitions:
            return name
    raise ShardConfigError(f"partition {partition} belongs to no shard")


class RoutingCheck:
    """Whether a user's record sits on the partition Kafka's default partitioner gives it.

    A producer on another partitioner (librdkafka's default is CRC32) or keying by
    something else sends a user's events to a shard the API does not route the user
    to, with no error anywhere: this is what notices.

    murmur2 in pure Python costs microseconds a key; the same users come back again
    and again, so each user's partition is remembered. The memory is bounded: when
    full it starts over, which costs one hash per user again, not a wrong answer.
    """

    def __init__(self, n_partitions: int, capacity: int = 100_000) -> None:
        self.n_partitions = n_partitions
        self.capacity = capacity
        self._partition: dict[str, int] = {}

    def expected(self, user_id: str) -> int:
        """The partition Kafka's default partitioner sends records keyed `user_id` to."""
        partition = self._partition.get(user_id)
        if partition is None:
            if len(self._partition) >= self.capacity:
                self._partition.clear()
            partition = partition_for_key(user_id.encode(), self.n_partitions)
            self._partition[user_id] = partition
        return partition

    def __len__(self) -> int:
        """How many users' partitions are remembered."""
        return len(self._partition)

    def misrouted(self, user_id: str, partition: int) -> bool:
        """True when a record of `user_id` arrived on another partition than its own."""
        return self.expected(user_id) != partition
