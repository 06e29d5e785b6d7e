"""Side topics: the dead-letter topic (records that are not events, and why) and the
quarantine (events the fraud guard blocked, with the rule and its figures).

Both keep the original bytes and say where the record came from. Their sends
are flushed before the offsets of those records are committed, so a crash
never loses one (a replay may send one twice: these topics are at-least-once).

Whatever the events topic accepted reaches its side topic in some form: whole when it
fits that topic's `max.message.bytes`, else cut to fit (stream.sizes), and should the
topic refuse even that, as a stub of the headers alone. Only a stub refused too is lost,
and then it is logged and counted; the shard goes on either way.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream.errors import PublishError
from stream.events import Rejection, Verdict
from stream.sizes import Header, fit

Headers = list[Header]
_Wire = list[tuple[str, str | bytes | None]]

# As long as kafka-python's delivery timeout: a flush gives up on a record after it.
_DELIVERY_TIMEOUT_MS = 120_000

PRODUCER_MAX_BYTES: Final = 1_000_000_000
"""The most librdkafka lets a producer send in one request (its `message.max.bytes` cap)."""

_BATCH_BYTES: Final = 1_000_000
"""librdkafka's default `batch.size`, kept where every side topic takes batches that large."""

_REFUSED: Final = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError._BAD_MSG,
    }
)
"""Errors that refuse one record for what it is (its size, a null key on a compacted
topic ...): sending it again cannot help. Any other error is the topic's or the broker's."""

log = logging.getLogger("headrace.learner")


def side_producer(bootstrap: str, client_id: str, limits: Sequence[int]) -> Producer:
    """The producer of the side topics, whose `max.message.bytes` are `limits`.

    Every publish flushes it before it commits, so records may wait for that flush:
    a long linger makes large batches (kafka-python, with 5 ms and 16 KB batches, spent
    ~25 µs a record when a bot attack was quarantined; librdkafka spends a few). A batch
    of several records stays under the smallest limit; a record alone may be as large as
    its own topic takes (SideTopic cuts it to that).
    """
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "linger.ms": 200,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": _DELIVERY_TIMEOUT_MS,
            "message.max.bytes": max(1000, min(max(limits), PRODUCER_MAX_BYTES)),
            "batch.size": max(1, min(_BATCH_BYTES, *limits)),
            "logger": logging.getLogger("headrace.kafka"),
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


class SideObserver(Protocol):
    """Told what became of the records sent aside (the learner counts them in metrics)."""

    def truncated(self, topic: str) -> None: ...

    def refused(self, topic: str, error: str) -> None: ...

    def lost(self, topic: str) -> None: ...


class _Unobserved:
    def truncated(self, topic: str) -> None:
        pass

    def refused(self, topic: str, error: str) -> None:
        pass

    def lost(self, topic: str) -> None:
        pass


@dataclass(slots=True)
class _Sent:
    """One record sent aside, until its delivery is known."""

    where: str
    """Where the original is: topic/partition/offset."""
    headers: Headers
    """The headers headrace adds, for a stub should the copy be refused."""
    error: KafkaError | None = None

    def delivered(self, error: KafkaError | None, _: Message) -> None:
        self.error = error


class SideTopic:
    """Sends records aside to one topic; `flush` before committing their offsets."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        max_bytes: int,
        observer: SideObserver | None = None,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self.max_bytes = min(max_bytes, PRODUCER_MAX_BYTES)
        """The copies' size limit: the topic's `max.message.bytes`."""
        self._observer = observer or _Unobserved()
        self._sent: list[_Sent] = []

    def send(self, record: Message, headers: Headers) -> None:
        # The original bytes go as they came (cut only where the topic would refuse them),
        # so the producer's bug can be replayed.
        value = record.value()
        size = len(value) if value is not None else 0
        headers = [*headers, ("original_size", str(size).encode())]
        copy = fit(record.key(), value, headers, self.max_bytes)
        if copy.cut:
            self._observer.truncated(self.topic)
        where = f"{record.topic()}/{record.partition()}/{record.offset()}"
        self._produce(_Sent(where, headers), copy.key, copy.value, copy.headers)

    def _produce(
        self, sent: _Sent, key: bytes | None, value: bytes | None, headers: Headers
    ) -> None:
        wire: _Wire = [*headers]
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=wire, on_delivery=sent.delivered
                )
                break
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                self._producer.poll(0.1)
            except KafkaException as exc:  # refused before sending (e.g. over message.max.bytes)
                sent.error = exc.args[0]
                break
        self._sent.append(sent)

    def flush(self) -> None:
        """Block until every record sent so far is written: whole, cut, or as a stub.

        A record the topic refuses for what it is goes again as a stub: the headers
        alone (with `side_error`), keyed by where the original is. A refused stub is
        lost: logged and counted. Any other failure (a timeout, an unknown topic, no
        authorization) raises PublishError, so nothing is committed past it.
        """
        for sent, error in self._settle():
            log.error(
                "%s refused the copy of %s (%s); writing its headers alone",
                self.topic,
                sent.where,
                error.str(),
            )
            stub = [
                *sent.headers,
                ("truncated", b"key,value"),
                ("side_error", error.name().encode()),
            ]
            self._produce(_Sent(sent.where, stub), sent.where.encode(), b"", stub)
        for sent, error in self._settle():
            log.error(
                "%s refused even the headers of %s (%s): this record is in no side topic",
                self.topic,
                sent.where,
                error.str(),
            )
            self._observer.lost(self.topic)

    def _settle(self) -> list[tuple[_Sent, KafkaError]]:
        """Wait for what was sent; return the records refused for what they are."""
        if not self._sent:
            return []
        left = self._producer.flush(_DELIVERY_TIMEOUT_MS / 1000 + 10)
        sent, self._sent = self._sent, []
        failed = [(s, s.error) for s in sent if s.error is not None]
        for _, error in failed:
            self._observer.refused(self.topic, error.name())
        other = [error for _, error in failed if error.code() not in _REFUSED]
        if other or left:
            first = other[0].str() if other else "delivery timed out"
            raise PublishError(
                f"{len(other) + left} records not delivered to {self.topic}: {first}"
            )
        return failed
