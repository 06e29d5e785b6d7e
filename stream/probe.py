"""Asking Kafka what it holds, bounded in time: whether it answers, where partitions end."""

import socket

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from stream.settings import StreamSettings


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def answering(settings: StreamSettings, timeout: float = 3.0) -> bool:
    """True when the first broker answers a metadata request (not just accepts connections)."""
    host, port = settings.kafka_host_port
    return answering_at(host, port, timeout)


def answering_at(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when the broker at host:port answers a metadata request."""
    # A plain connect first: kafka-python logs every refused connection loudly.
    if not tcp_open(host, port, timeout):
        return False
    millis = max(int(timeout * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=f"{host}:{port}",
            client_id="headrace-stack",
            request_timeout_ms=millis,
            bootstrap_timeout_ms=millis,
            reconnect_backoff_max_ms=200,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    except (KafkaError, OSError):
        return False
    return True


def brokers_registered(settings: StreamSettings, timeout_s: float = 3.0) -> int:
    """How many brokers the cluster lists now; 0 when no bootstrap server answers."""
    millis = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="headrace-stack",
            request_timeout_ms=millis,
            bootstrap_timeout_ms=millis,
            reconnect_backoff_max_ms=200,
        )
        try:
            return len(admin.describe_cluster()["brokers"])
        finally:
            admin.close()
    except (KafkaError, OSError):
        return 0


def end_offsets(settings: StreamSettings, timeout_s: float = 3.0) -> dict[int, int] | None:
    """The end offset of each partition of the events topic; None when Kafka cannot say."""
    millis = int(timeout_s * 1000)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            request_timeout_ms=millis,
            bootstrap_timeout_ms=millis,
            reconnect_backoff_max_ms=200,
        )
    except KafkaError:
        return None
    try:
        partitions = consumer.partitions_for_topic(settings.topic_events) or set()
        tps = [TopicPartition(settings.topic_events, p) for p in sorted(partitions)]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    except KafkaError:
        return None
    finally:
        consumer.close()
