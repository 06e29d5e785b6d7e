import zlib

import pytest

from stream.shards import (
    RoutingCheck,
    ShardConfigError,
    parse_shards,
    partition_for_key,
    shard_for_user,
)


def test_default_is_one_shard_over_every_partition() -> None:
    assert parse_shards("main=*", 3) == {"main": [0, 1, 2]}


def test_explicit_split() -> None:
    assert parse_shards("a=0,1;b=2", 3) == {"a": [0, 1], "b": [2]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a=0,1", "belong to no shard"),
        ("a=0,1;b=1,2", "is in shards"),
        ("a=0,5;b=1,2", "not in"),
        ("x", "name="),
    ],
)
def test_bad_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ShardConfigError, match=message):
        parse_shards(spec, 3)


def test_partitioning_matches_kafkas_java_partitioner() -> None:
    # Values of the Java client's Utils.murmur2 for these keys, as kafka-python's tests state them.
    assert partition_for_key(b"21", 1_000_000) == (-973932308 & 0x7FFFFFFF) % 1_000_000
    assert shard_for_user("21", {"a": [0], "b": [1]}, 2) in {"a", "b"}


def test_the_routing_check_places_users_as_kafkas_partitioner() -> None:
    check = RoutingCheck(7)
    for i in range(500):
        user = f"user-{i}"
        own = partition_for_key(user.encode(), 7)
        assert check.expected(user) == own
        assert not check.misrouted(user, own)
        assert all(check.misrouted(user, p) for p in range(7) if p != own)


def test_a_crc32_partitioner_puts_users_where_the_check_notices() -> None:
    # librdkafka's default partitioner (consistent_random) is CRC32 of the key.
    users = [f"user-{i}" for i in range(1_000)]
    check = RoutingCheck(6)
    crc32 = {u: zlib.crc32(u.encode()) % 6 for u in users}
    placed_elsewhere = [u for u in users if crc32[u] != partition_for_key(u.encode(), 6)]
    noticed = [u for u in users if check.misrouted(u, crc32[u])]
    assert noticed == placed_elsewhere
    assert len(noticed) > 700  # about five in six users land elsewhere


def test_the_routing_check_remembers_a_bounded_number_of_users() -> None:
    check = RoutingCheck(3, capacity=10)
    for i in range(100):
        user = f"user-{i}"
        assert check.expected(user) == partition_for_key(user.encode(), 3)
        assert len(check) <= 10
