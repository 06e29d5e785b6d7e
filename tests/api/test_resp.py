"""The request path's multiplexed Redis connection: right replies, clean failures."""

import asyncio
import random
import socket
import threading
from typing import Any

import pytest
import redis
from hiredis import ReplyError

from api.online import (
    OnlineAggregates,
    RedisHealth,
    _decode,
    _hmget_items,
    _item_columns,
    _ItemCommands,
)
from api.resp import RespError, RespPipeline, pack
from learner.aggregates import HashWriter
from learner.features import ITEM_FIELDS, ItemColumns
from learner.layout import ShardKeys
from stream.settings import StreamSettings

pytestmark = pytest.mark.integration


def test_concurrent_callers_each_get_their_own_replies(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    keys = [f"{settings.key_prefix}:k{i}" for i in range(200)]
    for i, key in enumerate(keys):
        redis_client.hset(key, mapping={"i": str(i)})
    pipeline = RespPipeline(settings.redis_url, 2.0, password=settings.redis_password_value)

    async def one(i: int) -> list[Any]:
        # Batches of different sizes interleave on the one connection.
        batch = keys[i : i + 1 + i % 7]
        return await pipeline.execute(b"".join(pack("HGETALL", k) for k in batch), len(batch))

    async def main() -> list[list[Any]]:
        try:
            return await asyncio.gather(*(one(i) for i in range(150)))
        finally:
            pipeline.close()

    results = asyncio.run(main())
    for i, replies in enumerate(results):
        assert [r[1] for r in replies] == [str(j).encode() for j in range(i, i + 1 + i % 7)]


def test_error_replies_are_values_not_failures(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    redis_client.set(f"{settings.key_prefix}:plain", "x")
    pipeline = RespPipeline(settings.redis_url, 2.0, password=settings.redis_password_value)

    async def main() -> list[object]:
        packed = pack("HGETALL", f"{settings.key_prefix}:plain") + pack("PING")
        try:
            return await pipeline.execute(packed, 2)
        finally:
            pipeline.close()

    wrong, pong = asyncio.run(main())
    assert isinstance(wrong, ReplyError) and "WRONGTYPE" in str(wrong)
    assert pong == "PONG" or pong == b"PONG"


def test_an_integer_reply_of_zero_is_a_reply_not_the_end_of_the_data(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    # hiredis says "no whole reply yet" with False by default, which equals the integer 0.
    pipeline = RespPipeline(settings.redis_url, 2.0, password=settings.redis_password_value)

    async def main() -> list[object]:
        packed = pack("EXISTS", f"{settings.key_prefix}:no-such-key") + pack("PING")
        try:
            return await pipeline.execute(packed, 2)
        finally:
            pipeline.close()

    zero, pong = asyncio.run(main())
    assert zero == 0 and zero is not False
    assert pong == "PONG" or pong == b"PONG"


def test_the_database_of_the_url_is_selected(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    other: redis.Redis = redis.Redis.from_url(
        settings.redis_url.rsplit("/", 1)[0] + "/5", password=settings.redis_password_value
    )
    key = f"{settings.key_prefix}:in-db-5"
    other.hset(key, mapping={"a": "1"})
    pipeline = RespPipeline(
        settings.redis_url.rsplit("/", 1)[0] + "/5", 2.0, password=settings.redis_password_value
    )

    async def main() -> list[object]:
        try:
            return await pipeline.execute(pack("HGETALL", key), 1)
        finally:
            pipeline.close()

    try:
        assert asyncio.run(main()) == [[b"a", b"1"]]
    finally:
        other.delete(key)
        other.close()


def test_a_silent_server_times_out_and_a_refused_one_fails_fast() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    port = silent.getsockname()[1]

    async def ask(url: str) -> None:
        await RespPipeline(url, 0.2).execute(pack("PING"), 1)

    with pytest.raises(RespError, match=r"within|connect"):
        asyncio.run(ask(f"redis://127.0.0.1:{port}/0"))
    silent.close()
    for conn in accepted:
        conn.close()
    with pytest.raises(RespError, match="connect"):
        asyncio.run(ask(f"redis://127.0.0.1:{port}/0"))


def test_each_request_times_out_at_its_own_deadline_after_answered_ones() -> None:
    """One timer serves every request of a connection: requests answered in time never
    fail, and one left unanswered fails at its own deadline, not an earlier one's."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer_pings() -> None:
        # +PONG for every PING; anything else (the ECHO below) is never answered.
        conn = server.accept()[0]
        seen, answered = b"", 0
        with conn:
            while chunk := conn.recv(65_536):
                seen += chunk
                pings = seen.count(b"PING")
                conn.sendall(b"+PONG\r\n" * (pings - answered))
                answered = pings

    threading.Thread(target=answer_pings, daemon=True).start()
    timeout = 0.2

    async def main() -> tuple[int, float, float]:
        loop = asyncio.get_running_loop()
        pipeline = RespPipeline(f"redis://127.0.0.1:{server.getsockname()[1]}/0", timeout)
        first = loop.time()
        answered = 0
        # Answered requests for half a timeout: the first one's deadline passes meanwhile.
        while loop.time() - first < timeout / 2 or answered < 2:
            assert await pipeline.execute(pack("PING"), 1) == [b"PONG"]
            answered += 1
        asked = loop.time()
        with pytest.raises(RespError, match="within"):
            await pipeline.execute(pack("ECHO", "x"), 1)
        pipeline.close()
        return answered, asked, loop.time()

    try:
        answered, asked, failed = asyncio.run(main())
    finally:
        server.close()
    assert answered >= 2
    assert failed - asked >= timeout


def fetch(
    settings: StreamSettings, keys: ShardKeys, user_id: str, item_ids: list[str]
) -> tuple[dict[str, float], ItemColumns]:
    """What the API reads for one request: the user's hash and the items' columns."""
    health = RedisHealth()
    health.up()
    pipeline = RespPipeline(settings.redis_url, 2.0, password=settings.redis_password_value)
    online = OnlineAggregates(pipeline, health)

    async def main() -> tuple[dict[str, float], ItemColumns] | None:
        try:
            return await online.fetch(keys, user_id, item_ids)
        finally:
            pipeline.close()

    fetched = asyncio.run(main())
    assert fetched is not None
    return fetched


def test_aggregates_come_back_in_candidate_order_with_repeats(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    keys = ShardKeys(settings.key_prefix, "main")
    written = {
        keys.user("u1"): {"imp": 3.0},
        keys.item("a"): {"imp": 1.0, "t": 5.5},
        keys.item("b"): {"imp": 2.0},
    }
    with redis_client.pipeline(transaction=True) as pipe:
        HashWriter(redis_client).write(pipe, written)  # as the learner's publish writes them
        pipe.execute()
    user, items = fetch(settings, keys, "u1", ["b", "a", "missing", "b"])
    assert user == {"imp": 3.0}
    assert items == ItemColumns.of([{"imp": 2.0}, {"imp": 1.0, "t": 5.5}, {}, {"imp": 2.0}])


def test_an_item_hash_that_is_not_the_learners_counts_as_a_new_item(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    keys = ShardKeys(settings.key_prefix, "main")
    redis_client.hset(keys.item("a"), mapping={"imp": "1.0", "t": "5.5", "note": "any text"})
    redis_client.hset(keys.item("b"), mapping={"imp": "not a number", "clk": "1.0"})
    redis_client.set(keys.item("c"), "a string, not a hash")
    redis_client.hset(keys.user("u1"), mapping={"imp": "3.0", "cat:x": "?"})
    user, items = fetch(settings, keys, "u1", ["a", "b", "c", "a"])
    assert user == {}  # a value that is not a number: not the learner's hash
    # Fields features() does not read do not matter; one it reads that is not a number
    # makes the item unknown, as does a key of another type.
    a = {"imp": 1.0, "t": 5.5}
    assert items == ItemColumns.of([a, {}, {}, a])


def _as_float_does(reply: list[bytes | None]) -> tuple[float | None, float, float, float]:
    """One item's values read with float(), as features() would read the hash."""
    try:
        time, *counts = (None if v is None else float(v) for v in reply)
    except ValueError:
        return (None, 0.0, 0.0, 0.0)
    imp, clk, pur = (0.0 if v is None else v for v in counts)
    return (time, imp, clk, pur)


ODD_VALUES = [
    b"5",
    b"-0",
    b"-0 ",
    b"\t-0\r\n",
    b"1e-05",
    b"-0.0",
    b"-0e3",
    b"-0.00",
    b"1e5",
    b" 2.5 ",
    b"1_000",
    b"+5",
    b"nan",
    b"inf",
    b"1.",
    b"null",
    b"true",
    b"1,2",
    b"1],[2",
    b"[1]",
    b"",
    b"x",
]
"""Values float() and JSON read differently, or one of them not at all."""


@pytest.mark.parametrize("odd", ODD_VALUES)
def test_user_values_are_read_as_float_reads_them(odd: bytes) -> None:
    rng = random.Random(odd)
    fields = [b"t", b"imp", b"cat:merino", b"ck:caf\xc3\xa9"]
    values = [b"%.17g" % (rng.random() * 10 ** rng.randrange(-3, 10)) for _ in fields]
    for at in range(len(values)):
        with_odd = list(values)
        with_odd[at] = odd
        reply = [x for pair in zip(fields, with_odd, strict=True) for x in pair]
        try:
            expected = {f.decode(): float(v) for f, v in zip(fields, with_odd, strict=True)}
        except ValueError:
            expected = {}  # not the learner's hash
        assert repr(_decode(reply)) == repr(expected)


@pytest.mark.parametrize("odd", ODD_VALUES)
def test_item_values_are_read_as_float_reads_them(odd: bytes) -> None:
    rng = random.Random(odd)
    replies: list[list[bytes | None]] = []
    for i in range(40):
        row: list[bytes | None] = [b"%.17g" % (1.7e9 + rng.random() * 1e5)]
        row += [b"%.17g" % (rng.random() * 10 ** rng.randrange(-3, 6)) for _ in range(3)]
        if i % 7 == 3:
            row[rng.randrange(4)] = None
        if i % 11 == 5:
            row = [None] * 4
        replies.append(row)
    for at in (0, 1, 3):  # the time, then counts
        with_odd = [list(row) for row in replies]
        with_odd[17][at] = odd
        with_odd[0][at] = odd
        for some in (with_odd, with_odd[:1], with_odd[16:19]):  # many items, a few
            rows = [_as_float_does(row) for row in some]
            expected = ItemColumns(*(list(column) for column in zip(*rows, strict=True)))
            got = _item_columns(some)
            # The same floats, to the sign of a zero (and a NaN where float() reads one).
            assert repr(got) == repr(expected)


@pytest.mark.parametrize("prefix", [b"headrace:main:item:", "h\u00e9:item:".encode()])
def test_item_commands_are_packed_as_the_generic_packer_packs_them(prefix: bytes) -> None:
    ids = ["i00017", "", "caf\u00e9", "\u2603 snowman", "a b\r\nc"]
    for chosen in ([ids[0]], ids, ids[2:], []):
        expected = b"".join(pack("HMGET", prefix + i.encode(), *ITEM_FIELDS) for i in chosen)
        assert _hmget_items(prefix, chosen, ITEM_FIELDS) == expected


def test_packed_item_commands_are_kept_up_to_a_bound() -> None:
    prefix = b"headrace:main:item:"
    commands = _ItemCommands(prefix, ITEM_FIELDS, size=3)
    ids = ["i1", "i2", "caf\u00e9", "i4", "i1", "i5"]
    for item_id in ids:
        expected = pack("HMGET", prefix + item_id.encode(), *ITEM_FIELDS)
        assert commands[item_id] == expected
        assert len(commands) <= 3
    assert list(commands) == ["i4", "i1", "i5"]  # the oldest packed went first
