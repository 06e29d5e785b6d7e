"""Events a producer put on another partition than their user's are counted, through Kafka."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
from kafka import KafkaProducer
from prometheus_client import REGISTRY

from learner.compose import build_worker
from learner.settings import LearnerSettings
from stream.events import Labeled, dump_event
from stream.settings import StreamSettings
from stream.shards import partition_for_key
from tests.learner.harness import TEST_JOIN_WINDOW_S, caught_up, end_offsets, store, wait_until
from tests.support import learner_seal

pytestmark = [pytest.mark.integration]


def misrouted_metric(shard: str) -> float:
    return REGISTRY.get_sample_value("headrace_learner_misrouted_total", {"shard": shard}) or 0.0


def test_the_published_count_of_misrouted_events_is_what_was_sent_elsewhere(
    topics: StreamSettings, redis_client: redis.Redis
) -> None:
    n = topics.partitions
    assert n > 1
    start = datetime(2026, 1, 1, tzinfo=UTC)
    producer = KafkaProducer(bootstrap_servers=topics.kafka_bootstrap)
    wrong = 0
    try:
        for i in range(300):
            user = f"user-{i % 40}"
            event = Labeled(
                event_id=f"e{i}",
                ts=start + timedelta(seconds=i),
                user_id=user,
                features={"x": float(i % 7), "colour": "red" if i % 2 else "blue"},
                label=i % 3 == 0,
            )
            value = dump_event(event)
            own = partition_for_key(user.encode(), n)
            if i % 5 == 0:
                # As a CRC32 partitioner would: the user's key, another partition.
                other = (own + 1 + i % (n - 1)) % n
                producer.send(topics.topic_events, key=user.encode(), value=value, partition=other)
                wrong += 1
            elif i % 5 == 1:
                # Sent to its own partition by hand: right, whoever chose it.
                producer.send(topics.topic_events, key=user.encode(), value=value, partition=own)
            else:
                # kafka-python's default partitioner is Java's murmur2, as Kafka's.
                producer.send(topics.topic_events, key=user.encode(), value=value)
        # A record that does not parse has no user to place: rejected, not counted here.
        wrong_partition = (partition_for_key(b"user-0", n) + 1) % n
        producer.send(topics.topic_events, key=b"user-0", value=b"{", partition=wrong_partition)
        producer.flush(30)
    finally:
        producer.close(10)
    assert wrong == 60

    before = misrouted_metric("main")
    learner_settings = LearnerSettings(
        metrics_port=0,
        lease_ttl_ms=1500,
        group_id=topics.key_prefix,
        join_window_s=TEST_JOIN_WINDOW_S,
    )
    worker = build_worker(topics, learner_settings, redis_client, seal=learner_seal())
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        ends = end_offsets(topics)
        assert sum(ends.values()) == 301
        wait_until(lambda: caught_up(redis_client, topics, ends), 60, "the learner")
    finally:
        stop.set()
        thread.join(30)

    meta = store(redis_client, topics).load_meta()
    assert meta is not None
    assert meta["counts"]["misrouted"] == wrong
    assert meta["counts"]["rejected_invalid_json"] == 1
    assert misrouted_metric("main") - before == wrong
