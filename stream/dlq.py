"""Side topics: the dead-letter topic (records that are not events, and why) and the
quarantine (events the fraud guard blocked, with the rule and its figures).

Both keep the original bytes and say where the record came from. Their sends
are flushed before the offsets of those records are committed, so a crash
never loses one (a replay may send one twice: these topics are at-least-once).
"""

from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from guards.fraud import Verdict
from stream.errors import PublishError
from stream.events import Rejection


def _source(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    return [
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


def rejection_headers(record: ConsumerRecord, rejection: Rejection) -> list[tuple[str, bytes]]:
    return [
        ("reason", rejection.reason.encode()),
        ("detail", rejection.detail.encode()[:1024]),
        *_source(record),
    ]


def verdict_headers(record: ConsumerRecord, verdict: Verdict) -> list[tuple[str, bytes]]:
    return [
        ("rule", verdict.rule.encode()),
        ("figures", orjson.dumps(verdict.figures)),
        ("message", verdict.message.encode()[:1024]),
        *_source(record),
    ]


class SideTopic:
    """Sends records aside to one topic; `flush` before committing their offsets."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._futures: list[Any] = []

    def send(self, record: ConsumerRecord, headers: list[tuple[str, bytes]]) -> None:
        # The original bytes go as they came, so the producer's bug can be replayed.
        future = self._producer.send(
            self.topic, key=record.key, value=record.value, headers=headers
        )
        self._futures.append(future)

    def flush(self) -> None:
        """Block until every record sent so far is acknowledged; raise if one was not."""
        if not self._futures:
            return
        self._producer.flush()
        failed = [f for f in self._futures if f.failed()]
        self._futures = []
        if failed:
            raise PublishError(
                f"{len(failed)} records not delivered to {self.topic}: {failed[0].exception}"
            )
