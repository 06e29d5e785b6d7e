import pytest

from stream.shards import ShardConfigError, parse_shards, partition_for_key, shard_for_user


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
