"""Creating the topics headrace uses, idempotently."""

import contextlib

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.settings import StreamSettings


def ensure_topics(settings: StreamSettings, partitions: int | None = None) -> list[str]:
    """Create the events, dead-letter and quarantine topics where missing; return those created."""
    count = partitions or settings.partitions
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="headrace-admin")
    try:
        existing = set(admin.list_topics())
        missing = [name for name in settings.topics if name not in existing]
        if not missing:
            return []
        # Another process may create one between our listing and our request: same result.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [NewTopic(name, num_partitions=count, replication_factor=1) for name in missing]
            )
        return missing
    finally:
        admin.close()
