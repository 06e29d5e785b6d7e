"""Side topics: the dead-letter topic (records that are not events, and why) and the
quarantine (events the fraud guard blocked, with the rule and its figures).

Both keep the original bytes and say where the record came from. Their sends
are flushed before the offsets of those records are committed, so a crash
never loses one (a replay may send one twice: these topics are at-least-once).
"""

import orjson
from confluent_kafka import KafkaError, Message, Producer

from guards.fraud import Verdict
from stream.errors import PublishError
from stream.events import Rejection

Headers = list[tuple[str, str | bytes | None]]

# As long as kafka-python's delivery timeout: a flush gives up on a record after it.
_DELIVERY_TIMEOUT_MS = 120_000


def side_producer(bootstrap: str, client_id: str) -> Producer:
    """The producer of the side topics.

    Every publish flushes it before it commits, so records may wait for that flush:
    a long linger makes large batches (kafka-python, with 5 ms and 16 KB batches, spent
    ~25 µs a record when a bot attack was quarantined; librdkafka spends a few).
    """
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "linger.ms": 200,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": _DELIVERY_TIMEOUT_MS,
        }
    )


def _source(record: Message) -> Headers:
    return [
        ("source_topic", str(record.topic()).encode()),
        ("source_partition", str(record.partition()).encode()),
        ("source_offset", str(record.offset()).encode()),
    ]


def rejection_headers(record: Message, rejection: Rejection) -> Headers:
    return [
        ("reason", rejection.reason.encode()),
        ("detail", rejection.detail.encode()[:1024]),
        *_source(record),
    ]


def verdict_headers(record: Message, verdict: Verdict) -> Headers:
    return [
        ("rule", verdict.rule.encode()),
        ("figures", orjson.dumps(verdict.figures)),
        ("message", verdict.message.encode()[:1024]),
        *_source(record),
    ]


class SideTopic:
    """Sends records aside to one topic; `flush` before committing their offsets."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._sent = 0
        self._failed: list[KafkaError] = []

    def send(self, record: Message, headers: Headers) -> None:
        # The original bytes go as they came, so the producer's bug can be replayed.
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=record.value(),
                    key=record.key(),
                    headers=headers,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                self._producer.poll(0.1)
        self._sent += 1

    def _delivered(self, error: KafkaError | None, _: Message) -> None:
        if error is not None:
            self._failed.append(error)

    def flush(self) -> None:
        """Block until every record sent so far is acknowledged; raise if one was not."""
        if not self._sent:
            return
        left = self._producer.flush(_DELIVERY_TIMEOUT_MS / 1000 + 10)
        failed, self._failed, self._sent = self._failed, [], 0
        if failed or left:
            first = failed[0].str() if failed else "delivery timed out"
            raise PublishError(
                f"{len(failed) + left} records not delivered to {self.topic}: {first}"
            )
