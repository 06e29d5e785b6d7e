"""The learner process's parts, built from its settings and handed to its loop.

`build_worker` is what `headrace learn` runs: a librdkafka reader of the events topic,
the side topics' producer, the shard's lease and state store, around one
`learner.worker.ShardWorker`.
"""

from collections.abc import Callable

import redis

from guards.settings import GuardSettings
from learner import telemetry
from learner.layout import ShardKeys
from learner.lease import Lease
from learner.loop import Learner
from learner.recovery import Snapshots
from learner.settings import LearnerSettings
from learner.signing import Seal
from learner.state import StateStore
from learner.worker import ShardWorker
from stream.dlq import SideTopic, side_producer
from stream.limits import path_limits
from stream.reader import EventsReader
from stream.settings import StreamSettings

_FLUSH_AT_EXIT_S = 10.0


def build_worker(
    stream: StreamSettings,
    settings: LearnerSettings,
    client: redis.Redis,
    *,
    seal: Seal,
    owner_id: str | None = None,
    on_publish: Callable[[int, Learner], None] | None = None,
    snapshots: Snapshots | None = None,
    guards: GuardSettings | None = None,
) -> ShardWorker:
    """A learner for shard `settings.shard`, on the Kafka and Redis of `stream`."""
    keys = ShardKeys(stream.key_prefix, settings.shard)
    limits = path_limits(stream)
    reader = EventsReader(
        stream.kafka_bootstrap,
        stream.topic_events,
        settings.group_id,
        f"headrace-learner-{settings.shard}",
        limits.events,
    )
    producer = side_producer(
        stream.kafka_bootstrap, "headrace-learner-dlq", (limits.dlq, limits.quarantine)
    )
    side = SideMetrics(settings.shard)

    def close() -> None:
        producer.flush(_FLUSH_AT_EXIT_S)

    return ShardWorker(
        settings,
        client,
        shards=stream.shards,
        reader=reader,
        dead=SideTopic(producer, stream.topic_dlq, limits.dlq, side),
        quarantine=SideTopic(producer, stream.topic_quarantine, limits.quarantine, side),
        lease=Lease(client, keys, settings.lease_ttl_ms, owner_id),
        store=StateStore(client, keys, settings.lease_ttl_ms, seal),
        seal=seal,
        on_publish=on_publish,
        snapshots=snapshots,
        guards=guards,
        close=close,
    )


class SideMetrics:
    """What became of the records sent aside, as the learner's metrics."""

    def __init__(self, shard: str) -> None:
        self.shard = shard

    def truncated(self, topic: str) -> None:
        telemetry.SIDE_TRUNCATED.labels(self.shard, topic).inc()

    def refused(self, topic: str, error: str) -> None:
        telemetry.SIDE_ERRORS.labels(self.shard, topic, error).inc()

    def lost(self, topic: str) -> None:
        telemetry.SIDE_LOST.labels(self.shard, topic).inc()
