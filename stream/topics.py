"""Creating the topics headrace uses, idempotently."""

import contextlib

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.settings import StreamSettings


def replication(brokers: int) -> tuple[int, dict[str, str]]:
    """Replication factor and topic configs for a cluster of `brokers`: 3 replicas and
    min.insync.replicas=2 from three brokers on (an acknowledged record survives the loss
    of a broker, and one broker may be down without stopping producers); else every broker."""
    replicas = max(1, min(3, brokers))
    return replicas, {"min.insync.replicas": "2" if replicas >= 3 else "1"}


def ensure_topics(settings: StreamSettings, partitions: int | None = None) -> list[str]:
    """Create the events, dead-letter and quarantine topics where missing; return those created."""
    count = partitions or settings.partitions
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="headrace-admin")
    try:
        existing = set(admin.list_topics())
        missing = [name for name in settings.topics if name not in existing]
        if not missing:
            return []
        replicas, configs = replication(len(admin.describe_cluster()["brokers"]))
        # Another process may create one between our listing and our request: same result.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=count,
                        replication_factor=replicas,
                        topic_configs=configs,
                    )
                    for name in missing
                ]
            )
        return missing
    finally:
        admin.close()
