"""Running real learner processes against the test stack, and reading what they published."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from learner import modelcodec
from learner.features import FeatureConfig, features
from learner.keys import ShardKeys
from learner.state import StateStore
from stream.producer import make_producer, publish
from stream.settings import StreamSettings
from stream.simulator import SimRecord, SimulatorConfig, world
from tests.support import ROOT, learner_seal, read_topic, signer_env, stack_env, wait_for

TEST_JOIN_WINDOW_S = 300.0
"""The attribution window of the tests' learners. Test streams span minutes of event time:
with the shipped half hour nothing would close, so nothing would be scored."""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    wait_for(condition, what, timeout)


def send(settings: StreamSettings, records: Iterable[SimRecord]) -> None:
    producer = make_producer(settings)
    try:
        publish(producer, settings.topic_events, records)
    finally:
        producer.close(timeout=10)


def end_offsets(settings: StreamSettings) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = consumer.partitions_for_topic(settings.topic_events) or set()
        tps = [TopicPartition(settings.topic_events, p) for p in sorted(partitions)]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def learner_env(settings: StreamSettings, **overrides: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(stack_env(settings))
    env.update(signer_env())
    env.update(
        {
            "HEADRACE_TOPIC_EVENTS": settings.topic_events,
            "HEADRACE_TOPIC_DLQ": settings.topic_dlq,
            "HEADRACE_TOPIC_QUARANTINE": settings.topic_quarantine,
            "HEADRACE_SHARDS": settings.shards,
            "HEADRACE_METRICS_PORT": "0",
            "HEADRACE_LEASE_TTL_MS": "1500",
            "HEADRACE_PUBLISH_EVERY_EVENTS": "500",
            "HEADRACE_POLL_MAX_RECORDS": "250",
            "HEADRACE_GROUP_ID": f"{settings.key_prefix}-learners",
            # Tests that need snapshots switch them on with a key of their own.
            "HEADRACE_SNAPSHOT_INTERVAL_S": "0",
            "HEADRACE_JOIN_WINDOW_S": str(TEST_JOIN_WINDOW_S),
        }
    )
    env.update({f"HEADRACE_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def shipped_env(settings: StreamSettings, **overrides: object) -> dict[str, str]:
    """A learner's environment on `settings`' topics and keys, otherwise as it ships.

    `learner_env` publishes and polls in small steps to exercise crashes between them,
    with a short window for short streams; benchmarks and the quality test measure the
    learner with its defaults.
    """
    env = learner_env(settings, **overrides)
    for name in ("LEASE_TTL_MS", "PUBLISH_EVERY_EVENTS", "POLL_MAX_RECORDS", "JOIN_WINDOW_S"):
        if name.lower() not in overrides:
            del env[f"HEADRACE_{name}"]
    return env


class LearnerProcess:
    """`headrace learn` as a real subprocess, to be killed and restarted."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "learn"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """kill -9: no chance to publish or release anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait for the clean shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()
        self._log.close()


def store(client: redis.Redis, settings: StreamSettings, shard: str = "main") -> StateStore:
    return StateStore(
        client, ShardKeys(settings.key_prefix, shard), lease_ttl_ms=1500, seal=learner_seal()
    )


def committed_offsets(client: redis.Redis, settings: StreamSettings) -> dict[int, int]:
    """The committed offsets (JSON, read as they are: whichever key signed the state)."""
    raw = client.hget(ShardKeys(settings.key_prefix, "main").state, "offsets")
    return {int(p): int(o) for p, o in orjson.loads(raw).items()} if raw is not None else {}


def caught_up(client: redis.Redis, settings: StreamSettings, ends: dict[int, int]) -> bool:
    offsets = committed_offsets(client, settings)
    return all(offsets.get(p, 0) >= o for p, o in ends.items() if o > 0)


def probe_rows(config: SimulatorConfig, users: int = 20, k: int = 5) -> list[dict[str, Any]]:
    """Feature dicts of realistic candidates, to compare final models on."""
    store_world = world(config)
    rng = np.random.default_rng(3)
    at = datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    rows: list[dict[str, Any]] = []
    for user in range(users):
        request = store_world.request_for(user, rng, k=k)
        for c in request.candidates:
            rows.append(features(request.context, c.item, {}, {}, at, FeatureConfig()))
    return rows


def predictions(
    client: redis.Redis, settings: StreamSettings, probe: Sequence[dict[str, Any]]
) -> dict[str, list[float]]:
    """Each published variant's predictions on `probe`."""
    state = store(client, settings).load()
    assert state is not None
    out: dict[str, list[float]] = {}
    for name, blob in state.models.items():
        model = modelcodec.loads(blob)
        out[name] = [float(model.predict_proba_one(dict(x)).get(True, 0.0)) for x in probe]
    return out


def read_all(settings: StreamSettings, topic: str) -> list[Any]:
    """Every record of `topic`, from the beginning to its end as of now."""
    return read_topic(settings, topic)
