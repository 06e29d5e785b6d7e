"""Running the real learner against the test stack, and reading what it published.

Two ways: `LearnerProcess` is `headrace learn` as a subprocess, on Kafka; `InProcessLearner`
is the same loop (learner.worker.ShardWorker) in this process, handed in-process
collaborators where Kafka is not the point: the events topic in memory (`MemoryReader`)
and side topics that keep what is sent to them (`MemorySide`). Its lease and state store
are the real ones, on the test Redis.
"""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis
from confluent_kafka import Message
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from headrace.sim.publish import publish
from headrace.sim.simulator import SimRecord, SimulatorConfig, world
from learner import modelcodec
from learner.features import FeatureConfig, features
from learner.layout import ShardKeys, read_offsets
from learner.lease import Lease
from learner.loop import Learner
from learner.settings import LearnerSettings
from learner.state import StateStore
from learner.worker import ShardWorker
from stream.dlq import Headers
from stream.producer import make_producer
from stream.settings import StreamSettings
from stream.shards import partition_for_key
from tests.support import ROOT, learner_seal, read_topic, signer_env, stack_env, wait_for

TEST_JOIN_WINDOW_S = 300.0
"""The attribution window of the tests' learners. Test streams span minutes of event time:
with the shipped half hour nothing would close, so nothing would be scored."""


class MemoryReader:
    """The events topic in memory, as the worker reads it: records `feed` appends go to the
    partition Kafka's default partitioner gives their key, and `poll` reads them in turns
    across the assigned partitions, from the offsets the worker assigned."""

    def __init__(self, topic: str, n_partitions: int) -> None:
        self.topic = topic
        self.log: list[list[Message]] = [[] for _ in range(n_partitions)]
        self.position: dict[int, int] = {}
        """Assigned partition -> the next offset `poll` reads."""
        self.committed: dict[int, int] = {}

    def feed(self, records: Iterable[SimRecord]) -> None:
        n = len(self.log)
        for record in records:
            p = partition_for_key(record.key, n) if record.key else 0
            log = self.log[p]
            log.append(Message(self.topic, p, len(log), record.key, record.value))

    def behind(self) -> bool:
        """Whether an assigned partition holds records not read yet."""
        return any(at < len(self.log[p]) for p, at in self.position.items())

    def partitions(self) -> list[int]:
        return list(range(len(self.log)))

    def assign(self, partitions: list[int], offsets: dict[int, int]) -> None:
        self.position = {p: offsets.get(p, 0) for p in partitions}

    def unassign(self) -> None:
        self.position = {}

    def poll(self, most: int) -> list[Message]:
        share = max(1, most // max(1, len(self.position)))
        batch: list[Message] = []
        for p, at in self.position.items():
            taken = self.log[p][at : at + min(share, most - len(batch))]
            batch.extend(taken)
            self.position[p] = at + len(taken)
        return batch

    def ends(self, fresh: bool = False) -> dict[int, int]:
        return {p: len(self.log[p]) for p in self.position}

    def commit(self, offsets: dict[int, int], wait: bool) -> None:
        self.committed.update(offsets)

    def close(self) -> None:
        self.position = {}


class MemorySide:
    """A side topic that keeps what is sent to it, with the headers."""

    def __init__(self) -> None:
        self.records: list[tuple[Message, Headers]] = []

    def send(self, record: Message, headers: Headers) -> None:
        self.records.append((record, headers))

    def flush(self) -> None:
        pass


class InProcessLearner:
    """The learner's loop on in-process collaborators: feed records, publish versions.

    `process` feeds records to the in-memory topic and turns the real loop until it has
    read them all; `publish` commits a version as `headrace learn` does. Nothing is
    published in between (the publish cadence is set out of reach), so versions come
    only from `publish`."""

    def __init__(
        self,
        settings: StreamSettings,
        client: redis.Redis,
        variants: dict[str, str] | None = None,
        n_partitions: int = 3,
        join_window_s: float = TEST_JOIN_WINDOW_S,
        shard: str = "main",
    ) -> None:
        learner_settings = LearnerSettings(
            metrics_port=0,
            variants=variants or {"main": "logreg"},
            lease_ttl_ms=60_000,
            join_window_s=join_window_s,
            shard=shard,
            poll_max_records=500,
            publish_every_events=2**62,
            publish_every_ms=2**62,
        )
        keys = ShardKeys(settings.key_prefix, shard)
        self.reader = MemoryReader(settings.topic_events, n_partitions)
        self.dead, self.quarantine = MemorySide(), MemorySide()
        self.worker = ShardWorker(
            learner_settings,
            client,
            shards=settings.shards,
            reader=self.reader,
            dead=self.dead,
            quarantine=self.quarantine,
            lease=Lease(client, keys, learner_settings.lease_ttl_ms),
            store=StateStore(client, keys, learner_settings.lease_ttl_ms, learner_seal()),
            seal=learner_seal(),
        )
        assert self.worker.lease.try_acquire()
        self.worker.activate()

    @property
    def keys(self) -> ShardKeys:
        return self.worker.keys

    @property
    def lease(self) -> Lease:
        return self.worker.lease

    @property
    def store(self) -> StateStore:
        return self.worker.store

    @property
    def learner(self) -> Learner:
        learner = self.worker.learner
        assert learner is not None
        return learner

    def process(self, records: Iterable[SimRecord]) -> None:
        self.reader.feed(records)
        while self.reader.behind():
            self.worker.step()

    def publish(self) -> int:
        return self.worker.publish()

    def take_over(self) -> None:
        """What the loop does when it takes the shard (again): drop what is in memory, hold
        the lease, load what Redis has (a state it found is published at once under a new
        epoch) and read on from its offsets."""
        self.worker.deactivate()
        assert self.worker.lease.try_acquire()
        self.worker.activate(taken_over=True)
        while self.reader.behind():
            self.worker.step()

    def close(self) -> None:
        """Give the shard up (what was learned stays readable here)."""
        self.worker.lease.release()


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
            [sys.executable, "-m", "headrace.cli", "learn"],
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
    return read_offsets(client, ShardKeys(settings.key_prefix, "main"))


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


@contextmanager
def running_worker(
    worker: ShardWorker, client: redis.Redis, settings: StreamSettings, timeout: float, what: str
) -> Iterator[threading.Thread]:
    """`worker` (what `headrace learn` runs) in a thread, caught up with the topic's end
    offsets as they are on entry; stopped when the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        ends = end_offsets(settings)
        wait_until(lambda: caught_up(client, settings, ends), timeout, what)
        yield thread
    finally:
        stop.set()
        thread.join(30)
