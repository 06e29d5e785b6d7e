"""The local stack for real: its own broker and Redis in a tmp folder, on free ports.

These tests never touch the main test stack that scripts/test starts; they
only share its resolved Kafka jars (`cache_dir`), so nothing is downloaded
twice. One module-wide stack; each test first brings it up (a no-op when the
previous test left it running).
"""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import SecretStr

from headrace.devstack import kafka_jars, redis_local, stack
from headrace.devstack.errors import StackError
from headrace.devstack.stack import ALREADY_RUNNING, NOT_RUNNING, STARTED, STOPPED, StackStatus
from learner.redisconn import connect
from stream.probe import tcp_open
from stream.settings import StreamSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; all held at once so they differ from each other."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def jar_cache() -> str:
    """The shared jar cache ($HEADRACE_KAFKA_CACHE_DIR), which scripts/test already filled."""
    cache = StreamSettings().kafka_cache_dir
    kafka_jars.ensure_libs(cache)
    return cache


@pytest.fixture(scope="module")
def own_settings(tmp_path_factory: pytest.TempPathFactory) -> StreamSettings:
    kafka_port, controller_port, redis_port = _free_ports(3)
    return StreamSettings(
        stack_dir=str(tmp_path_factory.mktemp("stack")),
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        controller_port=controller_port,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        redis_password=SecretStr("own-stack-password-0123456789abcdef"),
        kafka_heap="256m",
        partitions=2,
        # The one-broker, one-Redis shape, whatever the test stack runs.
        kafka_brokers=1,
        stack_redis="single",
        redis_sentinels="",
    )


@pytest.fixture(scope="module")
def own_stack(own_settings: StreamSettings, jar_cache: str) -> Iterator[StreamSettings]:
    try:
        yield own_settings
    finally:
        stack.down(own_settings)


@pytest.fixture
def running(own_stack: StreamSettings, jar_cache: str) -> StackStatus:
    return stack.up(own_stack, cache_dir=jar_cache)


def _port_open(port: int) -> bool:
    return tcp_open("127.0.0.1", port, timeout=1.0)


def _processes_using(folder: str) -> list[int]:
    """Pids whose command line or working folder lies in `folder` (redis rewrites its cmdline)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = str((entry / "cwd").readlink())
        except OSError:
            continue
        if folder in argv or cwd.startswith(folder):
            found.append(int(entry.name))
    return found


def test_second_up_is_a_no_op(
    running: StackStatus, own_stack: StreamSettings, jar_cache: str
) -> None:
    assert running.all_running
    again = stack.up(own_stack, cache_dir=jar_cache)

    assert again.kafka.pid == running.kafka.pid
    assert again.redis.pid == running.redis.pid
    assert again.kafka.action == again.redis.action == ALREADY_RUNNING
    assert again.topics_created == ()
    assert "nothing to do" in str(again)
    now = stack.status(own_stack)
    assert now.all_running
    assert (now.kafka.pid, now.redis.pid) == (running.kafka.pid, running.redis.pid)

    consumer = KafkaConsumer(bootstrap_servers=own_stack.kafka_bootstrap)
    try:
        assert set(own_stack.topics) <= consumer.topics()
        for topic in own_stack.topics:
            assert consumer.partitions_for_topic(topic) == {0, 1}
    finally:
        consumer.close()


def test_restart_keeps_topic_data_and_redis_state(
    running: StackStatus, own_stack: StreamSettings, jar_cache: str
) -> None:
    topic, count = own_stack.topic_events, 500
    producer = KafkaProducer(bootstrap_servers=own_stack.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        sent = [
            producer.send(topic, key=f"user{i % 37}".encode(), value=str(i).encode())
            for i in range(count)
        ]
        producer.flush(timeout=30)
        for future in sent:
            future.get(timeout=10)
    finally:
        producer.close()
    client: redis.Redis = connect(own_stack)
    client.set("test-stack:restart", b"kept")
    client.close()

    stack.down(own_stack)
    after = stack.up(own_stack, cache_dir=jar_cache)

    assert after.kafka.action == after.redis.action == STARTED
    assert after.kafka.pid != running.kafka.pid
    assert after.topics_created == ()
    assert _consume_all(own_stack, topic, count) == {str(i) for i in range(count)}
    client = connect(own_stack)
    try:
        assert client.get("test-stack:restart") == b"kept"
    finally:
        client.close()


def _consume_all(settings: StreamSettings, topic: str, count: int) -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        values: list[str] = []
        for _ in range(60):
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value.decode() for record in records)
            if len(values) >= count:
                break
        assert len(values) == count
        return set(values)
    finally:
        consumer.close()


def test_down_leaves_no_process_behind(running: StackStatus, own_stack: StreamSettings) -> None:
    ports = (
        own_stack.kafka_host_port[1],
        own_stack.controller_port,
        own_stack.redis_host_port[1],
    )
    assert all(_port_open(port) for port in ports)

    stopped = stack.down(own_stack)

    assert stopped.kafka.action == stopped.redis.action == STOPPED
    for pid in (running.kafka.pid, running.redis.pid):
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still exists"
    assert not any(_port_open(port) for port in ports)
    folder = str(Path(own_stack.stack_dir).resolve())
    assert _processes_using(folder) == []
    assert not (Path(folder) / "kafka.pid").exists()
    assert not (Path(folder) / "redis.pid").exists()

    again = stack.down(own_stack)
    assert again.kafka.action == again.redis.action == NOT_RUNNING
    assert not stack.status(own_stack).any_running


def test_a_redis_without_a_password_is_never_started(tmp_path: Path) -> None:
    settings = StreamSettings(
        stack_dir=str(tmp_path),
        redis_url=f"redis://127.0.0.1:{_free_ports(1)[0]}/0",
        redis_password=None,
    )
    with pytest.raises(StackError, match="requires a password") as refused:
        redis_local.start(settings)
    assert "HEADRACE_REDIS_PASSWORD" in str(refused.value)
    assert redis_local.running_pid(settings) is None


def test_the_password_reaches_redis_in_a_file_only_its_owner_reads(
    own_stack: StreamSettings, running: StackStatus
) -> None:
    config = Path(own_stack.stack_dir) / "redis.conf"
    assert config.stat().st_mode & 0o777 == 0o600
    assert running.redis.pid is not None
    argv = Path(f"/proc/{running.redis.pid}/cmdline").read_bytes()
    password = own_stack.redis_password_value
    assert password is not None and password.encode() not in argv
