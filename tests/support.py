"""Small helpers shared by test folders."""

import functools
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition

from learner.signing import Seal
from snapshots.keys import SigningKey
from stream.settings import StreamSettings
from stream.topics import replication

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")

WAIT_S = 60.0
"""How long a test waits for something that should happen: far beyond what it takes on a
loaded machine, since the deadline only ends a test that has failed anyway."""


def wait_for(check: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """Call `check` until it returns something truthy, and return that; an AssertionError
    naming `what` once `timeout` seconds have passed without. (A check that finds a value
    returns it or None.)"""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
    return got


def read_topic(
    settings: StreamSettings, topic: str, timeout: float = WAIT_S, **config: Any
) -> list[Any]:
    """Every record of `topic`, every partition, in offset order per partition: read until
    the end offsets of the moment are reached, not until a spell of silence, so a slow fetch
    cannot cut it short and an idle topic costs no wait. `config` goes to the KafkaConsumer
    (e.g. fetch_max_bytes for big records)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, **config
    )
    try:
        partitions = wait_for(
            lambda: consumer.partitions_for_topic(topic), f"{topic}'s partitions", timeout
        )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"timed out reading {topic} up to {ends}"
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def headrace(
    env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`headrace *args` run by this interpreter in the project folder, output captured;
    its exit code is the caller's to check."""
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@functools.cache
def signing_key() -> SigningKey:
    """The learners' signing key of this test run: made here, never written anywhere."""
    return SigningKey.generate()


def learner_seal() -> Seal:
    """What a learner of the tests signs and verifies its state with."""
    return Seal.of(signing_key())


def reader_seal() -> Seal:
    """What the API of the tests verifies state with: the public key only."""
    return Seal((signing_key().public,))


def signer_env(key: SigningKey | None = None) -> dict[str, str]:
    """The variables of a process that signs (a learner, an operator's CLI)."""
    return {"HEADRACE_SIGNING_KEY": (key or signing_key()).text}


def verifier_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a process that only verifies (the API): the signing key swapped for its
    public key, unless HEADRACE_VERIFY_KEY is there already."""
    out = {k: v for k, v in env.items() if k not in _SIGNING_VARIABLES}
    if "HEADRACE_VERIFY_KEY" not in out:
        secret = env.get("HEADRACE_SIGNING_KEY")
        path = env.get("HEADRACE_SIGNING_KEY_FILE")
        if secret is None and path is not None:
            secret = Path(path).read_text()
        key = SigningKey.parse(secret) if secret else signing_key()
        out["HEADRACE_VERIFY_KEY"] = key.public.text
    return out


_SIGNING_VARIABLES = ("HEADRACE_SIGNING_KEY", "HEADRACE_SIGNING_KEY_FILE")


def stack_env(settings: StreamSettings) -> dict[str, str]:
    """Where the test stack runs, and its Redis password, as a process's variables."""
    env = {
        "HEADRACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HEADRACE_REDIS_URL": settings.redis_url,
        "HEADRACE_KEY_PREFIX": settings.key_prefix,
    }
    if settings.redis_password is not None:
        env["HEADRACE_REDIS_PASSWORD"] = settings.redis_password.get_secret_value()
    if settings.redis_sentinels:
        env["HEADRACE_REDIS_SENTINELS"] = settings.redis_sentinels
        env["HEADRACE_REDIS_SENTINEL_SERVICE"] = settings.redis_sentinel_service
    return env


def own_topics(base: StreamSettings, key_prefix: str, name: str, **more: Any) -> StreamSettings:
    """`base` with a Redis key prefix and topics (`name`.events, .dlq, .quarantine) of
    a test's own."""
    return base.model_copy(
        update={
            "key_prefix": key_prefix,
            "topic_events": f"{name}.events",
            "topic_dlq": f"{name}.events.dlq",
            "topic_quarantine": f"{name}.events.quarantine",
            **more,
        }
    )


def create_topic(
    settings: StreamSettings,
    name: str,
    config: dict[str, str] | None = None,
    partitions: int = 1,
) -> str:
    """Create topic `name` with topic configs `config` (e.g. max.message.bytes); return it."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        # As the stack's own topics: replication 3 and min ISR 2 on a cluster of three.
        replicas, configs = replication(len(admin.describe_cluster()["brokers"]))
        admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=replicas,
                    topic_configs={**configs, **(config or {})},
                )
            ]
        )
    finally:
        admin.close()
    return name
