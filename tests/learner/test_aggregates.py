"""Online aggregates written in one script call read back as exactly the floats written."""

import math
import struct

import redis

from learner.aggregates import HashWriter, decode_hash
from stream.settings import StreamSettings

AWKWARD = {
    "third": 1 / 3,
    "tenth": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "negative_zero": -0.0,
    "time": 1_764_430_000.123456,
    "whole": 3.0,
    "int": 7,
    "inf": math.inf,
    "minus_inf": -math.inf,
}


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def test_every_double_reads_back_bit_for_bit(
    redis_client: redis.Redis, settings: StreamSettings
) -> None:
    prefix = settings.key_prefix
    wide = {f"cat:{i}": i / 7 for i in range(5_000)}  # more values than Lua's unpack() takes
    hashes = {f"{prefix}:u:a": AWKWARD, f"{prefix}:u:wide": wide, f"{prefix}:u:empty": {}}
    with redis_client.pipeline(transaction=True) as pipe:
        HashWriter(redis_client).write(pipe, hashes)
        pipe.execute()
    for key, written in hashes.items():
        read = decode_hash(redis_client.hgetall(key))
        assert {k: bits(v) for k, v in read.items()} == {
            k: bits(float(v)) for k, v in written.items()
        }, key
    assert not redis_client.exists(f"{prefix}:u:empty")


def test_fields_not_written_are_kept(redis_client: redis.Redis, settings: StreamSettings) -> None:
    """Like HSET: a publish writes the fields it has; others (an older field) stay."""
    key = f"{settings.key_prefix}:i:x"
    redis_client.hset(key, mapping={"old": "2.5", "imp": "1.0"})
    with redis_client.pipeline(transaction=True) as pipe:
        HashWriter(redis_client).write(pipe, {key: {"imp": 2.0, "t": 10.5}})
        pipe.execute()
    assert decode_hash(redis_client.hgetall(key)) == {"old": 2.5, "imp": 2.0, "t": 10.5}


def test_a_nan_reads_back_as_a_nan(redis_client: redis.Redis, settings: StreamSettings) -> None:
    key = f"{settings.key_prefix}:u:nan"
    with redis_client.pipeline(transaction=True) as pipe:
        HashWriter(redis_client).write(pipe, {key: {"x": math.nan}})
        pipe.execute()
    assert math.isnan(decode_hash(redis_client.hgetall(key))["x"])


def test_values_that_json_cannot_write_keep_their_fields(
    redis_client: redis.Redis, settings: StreamSettings
) -> None:
    """NaN and the infinities, among finite values of several hashes, each in its place."""
    prefix = settings.key_prefix
    hashes = {
        f"{prefix}:u:before": {"a": 1.5, "b": math.inf},
        f"{prefix}:u:mixed": {"c": math.nan, "d": 0.1, "e": -math.inf, "f": -0.0},
        f"{prefix}:u:after": {"g": 2.0},
    }
    with redis_client.pipeline(transaction=True) as pipe:
        HashWriter(redis_client).write(pipe, hashes)
        pipe.execute()
    mixed = decode_hash(redis_client.hgetall(f"{prefix}:u:mixed"))
    assert math.isnan(mixed.pop("c"))
    assert {k: bits(v) for k, v in mixed.items()} == {
        "d": bits(0.1),
        "e": bits(-math.inf),
        "f": bits(-0.0),
    }
    assert decode_hash(redis_client.hgetall(f"{prefix}:u:before")) == {"a": 1.5, "b": math.inf}
    assert decode_hash(redis_client.hgetall(f"{prefix}:u:after")) == {"g": 2.0}
