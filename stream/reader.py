"""The learner's reader of the events topic: librdkafka (confluent-kafka), assigned by hand.

librdkafka rather than kafka-python for the learner's own traffic: fetching and decoding
a record cost 1.1 µs of CPU against 6.8 (docs/learner.md, "Speed"). The learner never
joins the group's rebalancing; it assigns its shard's partitions at the offsets stored
with its state in Redis, and commits to the group only so that lag tools see it.
"""

import logging
from typing import Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

log = logging.getLogger("headrace.learner")

_FETCH_MAX_BYTES: Final = 52_428_800
"""librdkafka's default `fetch.max.bytes`, kept while no record batch is larger."""
_RECEIVE_MAX_BYTES: Final = 100_000_000
"""librdkafka's default `receive.message.max.bytes`, likewise."""
_RESPONSE_SLACK: Final = 1 << 20
"""Room in a fetch response for its framing around the records (partitions, aborts)."""
_INT32_MAX: Final = 2**31 - 1


def fetch_sizes(max_record_bytes: int) -> dict[str, int]:
    """Fetch sizes that take in any record batch up to `max_record_bytes` (the topic's limit).

    A broker sends a batch larger than `fetch.max.bytes` on its own; but a response larger
    than `receive.message.max.bytes` is dropped by librdkafka, which fetches it again, and
    again: the shard would stop at that record.
    """
    fetch = min(max(_FETCH_MAX_BYTES, max_record_bytes), _INT32_MAX - _RESPONSE_SLACK)
    return {
        "fetch.max.bytes": fetch,
        "receive.message.max.bytes": max(_RECEIVE_MAX_BYTES, fetch + _RESPONSE_SLACK),
    }


class EventsReader:
    """Reads one topic's assigned partitions from given offsets; commits to a group."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        client_id: str,
        max_record_bytes: int = _FETCH_MAX_BYTES,
    ) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "client.id": client_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
                # Records fetched ahead and held in memory (librdkafka's default: 64 MB; 16 MB
                # already added 50 MB to the learner's resident memory). Under two fetches'
                # worth (1 MB a partition each) the fetcher stalls: 4 MB cost 30 % of the
                # rate, 8 MB nothing measurable.
                "queued.max.messages.kbytes": 8 * 1024,
                "on_commit": self._committed,
                "logger": logging.getLogger("headrace.kafka"),
                **fetch_sizes(max_record_bytes),
            }
        )

    def partitions(self) -> list[int]:
        """The topic's partitions; [] while the broker does not know it (or cannot say)."""
        try:
            found = self._consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        except KafkaException as exc:
            log.warning("no metadata for %s: %s", self.topic, exc)
            return []
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def assign(self, partitions: list[int], offsets: dict[int, int]) -> None:
        """Read `partitions` from `offsets` (next offset to read); from the start without one."""
        self._consumer.assign(
            [TopicPartition(self.topic, p, offsets.get(p, OFFSET_BEGINNING)) for p in partitions]
        )

    def unassign(self) -> None:
        self._consumer.unassign()

    def poll(self, most: int) -> list[Message]:
        """What has arrived, up to `most` records; waits up to 100 ms for a first one.

        `consume(n, timeout)` alone waits for all n records or the timeout: at 5,000
        events/s that held every batch back 100 ms and doubled the published model's age.
        Fetch errors come as messages with `error()` set; librdkafka retries them itself.
        """
        batch = self._consumer.consume(most, timeout=0)
        if batch:
            return batch
        first = self._consumer.poll(0.1)
        if first is None:
            return []
        return [first, *self._consumer.consume(most - 1, timeout=0)] if most > 1 else [first]

    def ends(self, fresh: bool = False) -> dict[int, int]:
        """Each assigned partition's end: as the last fetch reported it (none before one),
        or `fresh` from the broker (a round trip per partition)."""
        ends: dict[int, int] = {}
        for tp in self._consumer.assignment():
            if fresh:
                _, high = self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            else:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                ends[tp.partition] = high
        return ends

    def commit(self, offsets: dict[int, int], wait: bool) -> None:
        """Commit `offsets` to the group: in the background, or waiting for the broker."""
        commit = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        try:
            if wait:
                self._consumer.commit(offsets=commit, asynchronous=False)
            else:
                self._consumer.commit(offsets=commit, asynchronous=True)
        except KafkaException as exc:
            log.warning("group offset commit to %s failed: %s", self.topic, exc)

    def close(self) -> None:
        self._consumer.close()

    def _committed(self, error: KafkaError | None, offsets: list[TopicPartition]) -> None:
        if error is not None:
            log.warning("group offset commit to %s failed: %s", self.topic, error.str())
