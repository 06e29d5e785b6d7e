"""The traffic split and the shard routing: stable, proportional, the learner's own."""

import os
import subprocess
import sys
from collections import Counter

import pytest

from api.traffic import ShardRouter, TrafficSplit, bucket, shard_names, user_tag
from stream.shards import parse_shards, partition_for_key
from tests.api.helpers import ROOT

USERS = [f"u{i:05d}" for i in range(20_000)]


def test_shares_are_honoured_within_a_percent() -> None:
    split = TrafficSplit({"main": 0.9, "tree": 0.1})
    counts = Counter(split.variant_for(user) for user in USERS)
    # Binomial: sd of the 10% share over 20,000 users is 0.2%; 1% is 5 sd.
    assert abs(counts["tree"] / len(USERS) - 0.1) < 0.01
    assert set(counts) == {"main", "tree"}


def test_shares_are_normalised_and_zero_shares_get_nobody() -> None:
    split = TrafficSplit({"a": 2.0, "b": 2.0, "c": 0.0})
    counts = Counter(split.variant_for(user) for user in USERS)
    assert set(counts) == {"a", "b"}
    assert abs(counts["a"] / len(USERS) - 0.5) < 0.02
    assert split.share_of("a") == pytest.approx(0.5)
    assert split.share_of("c") == 0.0


def test_no_split_means_the_shards_first_variant() -> None:
    assert TrafficSplit({}).variant_for("u1") is None


def test_same_user_same_variant_in_another_process() -> None:
    """blake2b, not hash(): a new process (another hash seed) routes every user the same."""
    here = [TrafficSplit({"main": 0.5, "tree": 0.5}).variant_for(u) for u in USERS[:500]]
    code = (
        "from api.traffic import TrafficSplit\n"
        "s = TrafficSplit({'main': 0.5, 'tree': 0.5})\n"
        "print(','.join(s.variant_for(f'u{i:05d}') or '' for i in range(500)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().split(",") == here


def test_buckets_are_uniform_and_fixed() -> None:
    points = [bucket(user) for user in USERS]
    assert all(0.0 <= p < 1.0 for p in points)
    assert abs(sum(points) / len(points) - 0.5) < 0.01
    # A fixed value: changing the hash would move every user to another variant.
    assert bucket("u00001") == pytest.approx(0.7984065030239245, abs=1e-15)
    assert bucket("shopper-42") == pytest.approx(0.687610258879095, abs=1e-15)
    assert user_tag("u00001") != "u00001" and len(user_tag("u00001")) == 12


def test_router_sends_users_where_the_learner_learns_them() -> None:
    spec = "a=0,1;b=2"
    router = ShardRouter(spec, 3)
    shards = parse_shards(spec, 3)
    for user in USERS[:2000]:
        partition = partition_for_key(user.encode(), 3)
        expected = next(name for name, parts in shards.items() if partition in parts)
        assert router.shard_for(user) == expected


def test_router_needs_the_partition_count_only_for_several_shards() -> None:
    assert ShardRouter("main=*", None).shard_for("u1") == "main"
    unknown = ShardRouter("a=0;b=1", None)
    assert not unknown.routable and unknown.shard_for("u1") is None
    assert shard_names(" a=0,1 ; b=2 ;") == ["a", "b"]
