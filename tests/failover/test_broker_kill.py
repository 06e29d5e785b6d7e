"""kill -9 one of three Kafka brokers in the middle of a stream, then start it again,
while a learner consumes and the API serves: nothing is lost or learned twice, /predict
never answers 5xx, and the lag drains."""

import os
import signal
import time
from pathlib import Path

import pytest
import redis
from kafka.admin import KafkaAdminClient

from headrace.devstack import kafka_local
from stream.settings import StreamSettings
from tests.api.helpers import JOIN_WINDOW_S, ApiProcess, api_env
from tests.failover.scenario import (
    RATE,
    WAIT_S,
    assert_exactly_once,
    assert_served,
    drain,
    first_records,
    start_traffic,
    stream,
)
from tests.failover.traffic import Client, Feed, bodies
from tests.learner.harness import LearnerProcess, committed_offsets, end_offsets, learner_env, store
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def leader_of(settings: StreamSettings, partition: int) -> int:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        topic = admin.describe_topics([settings.topic_events])[0]
    finally:
        admin.close()
    found = next(p for p in topic["partitions"] if p["partition_index"] == partition)
    leader: int = found["leader_id"]
    return leader


def test_one_broker_killed_and_restarted_loses_and_repeats_nothing(
    cluster: StreamSettings, cluster_redis: redis.Redis, tmp_path: Path
) -> None:
    config = stream(seed=41)
    records = first_records(cluster, config)
    learner = LearnerProcess(
        learner_env(cluster, join_window_s=JOIN_WINDOW_S), tmp_path / "learner.log"
    )
    api = ApiProcess(api_env(cluster), tmp_path / "api.log")
    client = Client(api.url, bodies(config))
    feed = Feed(cluster, records, rate=RATE)
    killed: int | None = None
    try:
        start_traffic(cluster, cluster_redis, [api], [client], feed)
        shard = store(cluster_redis, cluster)

        # The leader of partition 0: its partitions stop until another replica leads them.
        killed = leader_of(cluster, 0)
        pid = kafka_local.running_pid(cluster, killed)
        assert pid is not None
        version = shard.version()
        # Partition 0 ended here at the kill: records past it were written to its new leader.
        before = end_offsets(cluster)[0]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: shard.version() > version, "a publish after the kill", WAIT_S)
        published_s = time.monotonic() - killed_at
        wait_for(
            lambda: committed_offsets(cluster_redis, cluster).get(0, 0) > before,
            "partition 0 read past where it ended at the kill",
            WAIT_S,
        )
        moved_s = time.monotonic() - killed_at
        print(
            f"broker {killed} killed: the learner published again after {published_s:.1f} s, "
            f"and took in partition 0's records written after the kill {moved_s:.1f} s after it"
        )
        kafka_local.start_node(cluster, killed, timeout=WAIT_S)
        killed = None

        ends = drain(cluster, cluster_redis, feed)
        assert learner.stop(60) == 0
    finally:
        client.close()
        api.close()
        learner.close()
        if killed is not None and kafka_local.running_pid(cluster, killed) is None:
            kafka_local.start_node(cluster, killed, timeout=WAIT_S)

    assert_exactly_once(cluster, cluster_redis, config, feed, ends)
    assert_served([client])
    assert client.errors == []
