"""Small helpers shared by test folders."""

import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic

from stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]


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
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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
        admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=config or {},
                )
            ]
        )
    finally:
        admin.close()
    return name
