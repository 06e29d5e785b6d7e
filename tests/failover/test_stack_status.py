"""`headrace stack status` and `up` on the three-broker, Sentinel stack, run as an operator
would: with its folder, ports and password, but neither `--brokers` nor `--redis`."""

import os

import pytest

from headrace.devstack import kafka_cluster, redis_sentinel
from stream.settings import StreamSettings
from tests.support import headrace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def operator_env(cluster_stack: StreamSettings) -> dict[str, str]:
    """The stack's folder, first broker, Redis and password; no word of its shape."""
    first_broker = cluster_stack.kafka_addresses[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(
        {
            "HEADRACE_STACK_DIR": cluster_stack.stack_dir,
            "HEADRACE_KAFKA_BOOTSTRAP": f"{first_broker[0]}:{first_broker[1]}",
            "HEADRACE_CONTROLLER_PORT": str(cluster_stack.controller_port),
            "HEADRACE_REDIS_URL": cluster_stack.redis_url,
            "HEADRACE_REDIS_PASSWORD": cluster_stack.redis_password_value or "",
        }
    )
    return env


def test_status_without_the_shape_reads_what_up_started(cluster_stack: StreamSettings) -> None:
    done = headrace(operator_env(cluster_stack), "stack", "status")
    lines = done.stdout.splitlines()
    assert done.returncode in (0, 3), done.stderr  # 3: a test before this one killed a server
    kafka = [line for line in lines if line.startswith("kafka ")]
    assert len(kafka) == 3, done.stdout
    for line, node in zip(kafka, kafka_cluster.nodes(cluster_stack), strict=True):
        assert node.address in line and "running, pid" in line, done.stdout
    group = [line for line in lines if line.split()[0] in ("replica", "sent1", "sent2", "sent3")]
    assert [line.split()[0] for line in group] == ["replica", "sent1", "sent2", "sent3"]
    for line, member in zip(group, redis_sentinel.members(cluster_stack), strict=True):
        assert member.address in line, done.stdout
    assert all("running, pid" in line for line in group[1:]), done.stdout


def test_up_without_the_shape_keeps_the_three_brokers(cluster_stack: StreamSettings) -> None:
    """Not a one-broker stack on the first node's port: the three that run, left alone
    (and whatever a test before this one killed, started again)."""
    done = headrace(operator_env(cluster_stack), "stack", "up", timeout=300)
    assert done.returncode == 0, done.stderr
    kafka = [line for line in done.stdout.splitlines() if line.startswith("kafka ")]
    assert len(kafka) == 3 and all("running, pid" in line for line in kafka), done.stdout
    assert f"export HEADRACE_KAFKA_BOOTSTRAP={cluster_stack.kafka_bootstrap}" in done.stdout
