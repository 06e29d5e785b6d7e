"""Side topics on the real broker: copies cut to the byte the topic takes, stubs for what it
refuses, and an error (nothing committed) when the topic itself is unusable."""

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from stream.dlq import SideTopic, rejection_headers, side_producer
from stream.errors import PublishError
from stream.events import Rejection
from stream.settings import StreamSettings
from stream.sizes import batch_size
from tests.learner.harness import read_all
from tests.support import create_topic

pytestmark = [pytest.mark.integration]

LIMIT = 20_000


class Recorder:
    """A SideObserver that keeps what it is told, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def truncated(self, topic: str) -> None:
        self.seen.append(("truncated", topic))

    def refused(self, topic: str, error: str) -> None:
        self.seen.append(("refused", error))

    def lost(self, topic: str) -> None:
        self.seen.append(("lost", topic))


@pytest.fixture
def producer(settings: StreamSettings) -> Iterator[Producer]:
    made = side_producer(settings.kafka_bootstrap, "headrace-test-dlq", [LIMIT])
    yield made
    made.flush(10)


def source(offset: int, value: bytes | None, key: bytes | None = b"u1") -> Message:
    return Message(topic="events", partition=0, offset=offset, key=key, value=value)


def headers_of(record: Message) -> list[tuple[str, bytes]]:
    rejection = Rejection("too_large", f"record is {len(record.value() or b'')} bytes", b"")
    return rejection_headers(record, rejection)


def exact(offset: int, size: int) -> Message:
    """A source record whose copy (headers and all) is a batch of exactly `size` bytes."""
    for n in range(size, 0, -1):
        record = source(offset, b"x" * n)
        headers = [*headers_of(record), ("original_size", str(n).encode())]
        if batch_size(b"u1", b"x" * n, headers) == size:
            return record
    raise AssertionError(f"no value makes a {size}-byte copy")


def by_offset(records: list[Any]) -> dict[int, Any]:
    return {int(dict(r.headers)["source_offset"]): r for r in records}


def test_copies_are_cut_to_the_byte_the_broker_accepts(
    settings: StreamSettings, producer: Producer
) -> None:
    topic = create_topic(settings, f"{settings.topic_dlq}.small", {"max.message.bytes": str(LIMIT)})
    seen = Recorder()
    side = SideTopic(producer, topic, LIMIT, seen)
    at, over, huge = exact(1, LIMIT), exact(2, LIMIT + 1), source(3, b"y" * 1_000_000)
    for record in (source(0, b"small"), at, over, huge):
        side.send(record, headers_of(record))
    side.flush()
    assert seen.seen == [("truncated", topic), ("truncated", topic)]

    got = by_offset(read_all(settings, topic))
    assert got[0].value == b"small" and "truncated" not in dict(got[0].headers)
    assert got[1].value == at.value() and "truncated" not in dict(got[1].headers)
    for offset, original in ((2, over), (3, huge)):
        headers = dict(got[offset].headers)
        assert headers["truncated"] == b"value"
        assert headers["original_size"] == str(len(original.value() or b"")).encode()
        assert (original.value() or b"").startswith(got[offset].value)
        assert batch_size(got[offset].key, got[offset].value, got[offset].headers) == LIMIT


def test_a_copy_the_topic_refuses_is_written_as_a_stub(
    settings: StreamSettings, producer: Producer
) -> None:
    topic = create_topic(settings, f"{settings.topic_dlq}.small", {"max.message.bytes": str(LIMIT)})
    seen = Recorder()
    # As if the topic's limit had been lowered after the learner read it: one byte too many.
    side = SideTopic(producer, topic, LIMIT + 1, seen)
    over, fine = exact(7, LIMIT + 1), source(8, b"fine")
    for record in (over, fine):
        side.send(record, headers_of(record))
    side.flush()
    assert seen.seen == [("refused", "MSG_SIZE_TOO_LARGE")]

    got = by_offset(read_all(settings, topic))
    assert got[8].value == b"fine"
    stub = got[7]
    headers = dict(stub.headers)
    assert (stub.key, stub.value) == (b"events/0/7", b"")
    assert headers["side_error"] == b"MSG_SIZE_TOO_LARGE"
    assert headers["truncated"] == b"key,value"
    assert headers["original_size"] == str(len(over.value() or b"")).encode()
    assert headers["reason"] == b"too_large"


def test_a_compacted_topic_gets_a_keyed_stub_for_a_keyless_record(
    settings: StreamSettings, producer: Producer
) -> None:
    topic = create_topic(settings, f"{settings.topic_dlq}.compact", {"cleanup.policy": "compact"})
    seen = Recorder()
    side = SideTopic(producer, topic, LIMIT, seen)
    record = source(4, b"{not json", key=None)
    side.send(record, headers_of(record))
    side.flush()
    assert seen.seen == [("refused", "INVALID_RECORD")]
    [stub] = read_all(settings, topic)
    assert stub.key == b"events/0/4"
    assert dict(stub.headers)["side_error"] == b"INVALID_RECORD"


def test_a_record_refused_in_every_form_is_counted_lost_and_the_rest_goes_on(
    settings: StreamSettings, producer: Producer
) -> None:
    topic = create_topic(settings, f"{settings.topic_dlq}.tiny", {"max.message.bytes": "120"})
    seen = Recorder()
    side = SideTopic(producer, topic, 120, seen)
    record = source(5, b"x" * 5_000)
    side.send(record, headers_of(record))
    side.flush()  # does not raise: the shard goes on
    assert seen.seen == [
        ("truncated", topic),
        ("refused", "MSG_SIZE_TOO_LARGE"),
        ("refused", "MSG_SIZE_TOO_LARGE"),
        ("lost", topic),
    ]


def test_an_unusable_topic_raises_so_nothing_is_committed(
    settings: StreamSettings, producer: Producer
) -> None:
    seen = Recorder()
    side = SideTopic(producer, "not a topic name!", LIMIT, seen)
    record = source(6, b"x")
    side.send(record, headers_of(record))
    with pytest.raises(PublishError, match="not a topic name!"):
        side.flush()
    # The broker refuses the name (TOPIC_EXCEPTION), or the client's metadata answers first
    # that no such topic exists (_UNKNOWN_TOPIC): which comes first is a matter of timing,
    # and either is one refusal that stops the commit.
    assert seen.seen in ([("refused", "TOPIC_EXCEPTION")], [("refused", "_UNKNOWN_TOPIC")])
