"""kill -9 one of three Kafka brokers in the middle of a stream, then start it again,
while a learner consumes and the API serves: nothing is lost or learned twice, /predict
never answers 5xx, and the lag drains."""

import os
import signal
import time
from itertools import islice
from pathlib import Path

import httpx
import pytest
import redis
from kafka.admin import KafkaAdminClient

from headrace.devstack import kafka_local
from headrace.sim.simulator import generate
from stream.settings import StreamSettings
from tests.api.helpers import JOIN_WINDOW_S, ApiProcess, api_env, recent_config
from tests.failover.traffic import Client, Feed, bodies
from tests.learner.harness import (
    LearnerProcess,
    caught_up,
    committed_offsets,
    end_offsets,
    learner_env,
    send,
    store,
)
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = recent_config(seed=41, count=40_000, n_users=400, n_items=150)
FIRST = 3_000
"""Records sent before the learner starts; the rest are fed while the broker dies."""
WAIT_S = 240.0
"""Generous: three brokers, a learner and an API share the machine with everything else."""


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
    records = generate(STREAM)
    send(cluster, islice(records, FIRST))
    learner = LearnerProcess(
        learner_env(cluster, join_window_s=JOIN_WINDOW_S), tmp_path / "learner.log"
    )
    api = ApiProcess(api_env(cluster), tmp_path / "api.log")
    client = Client(api.url, bodies(STREAM))
    feed = Feed(cluster, records, rate=1_500)
    killed: int | None = None
    try:
        api.wait_listening(60)
        wait_for(lambda: httpx.get(f"{api.url}/ready").status_code == 200, "ready", WAIT_S)
        client.start()
        feed.start()
        shard = store(cluster_redis, cluster)
        wait_for(lambda: shard.version() > 5, "the learner publishing", WAIT_S)

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

        feed.join(WAIT_S)
        ends = end_offsets(cluster)
        wait_for(lambda: caught_up(cluster_redis, cluster, ends), "the lag to drain", WAIT_S)
        assert learner.stop(60) == 0
    finally:
        client.close()
        api.close()
        learner.close()
        if killed is not None and kafka_local.running_pid(cluster, killed) is None:
            kafka_local.start_node(cluster, killed, timeout=WAIT_S)

    sent = FIRST + feed.sent
    assert sent == STREAM.count
    # Kafka holds each record once (the idempotent producer's retries wrote none twice)...
    assert sum(ends.values()) == sent
    meta = store(cluster_redis, cluster).load_meta()
    assert meta is not None
    counts = meta["counts"]
    # ... and the committed state took each in once, up to Kafka's end offsets.
    assert {int(p): o for p, o in meta["offsets"].items()} == ends
    assert sum(v for k, v in counts.items() if k.startswith("event_")) == sent
    assert counts.get("duplicate_event", 0) == 0
    assert client.answers, "no /predict answered"
    assert client.server_errors() == []
    assert client.errors == []
