"""The dead-letter topic: every record that is not an event, with why and where from."""

from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from stream.errors import PublishError
from stream.events import Rejection


def rejection_headers(record: ConsumerRecord, rejection: Rejection) -> list[tuple[str, bytes]]:
    return [
        ("reason", rejection.reason.encode()),
        ("detail", rejection.detail.encode()[:1024]),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


class DeadLetters:
    """Sends rejections to the dead-letter topic; `flush` before committing their offsets."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._futures: list[Any] = []

    def send(self, record: ConsumerRecord, rejection: Rejection) -> None:
        # The original bytes go as they came, so the producer's bug can be replayed.
        future = self._producer.send(
            self.topic,
            key=record.key,
            value=record.value,
            headers=rejection_headers(record, rejection),
        )
        self._futures.append(future)

    def flush(self) -> None:
        """Block until every rejection sent so far is acknowledged; raise if one was not."""
        if not self._futures:
            return
        self._producer.flush()
        failed = [f for f in self._futures if f.failed()]
        self._futures = []
        if failed:
            raise PublishError(f"{len(failed)} dead letters not delivered: {failed[0].exception}")
