"""Small helpers shared by test folders."""

import functools
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic

from learner.signing import Seal
from snapshots.keys import SigningKey
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
