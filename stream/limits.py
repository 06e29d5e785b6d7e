"""The size limits on the learner's path, read from the broker when the learner starts.

Kafka refuses a record batch larger than its topic's `max.message.bytes` (which is the
broker's `message.max.bytes`, 1,048,588 by default, unless the topic overrides it). The
learner must fetch whatever the events topic accepted, and cut what it copies to a side
topic to fit that topic: so it asks the broker for those limits (DescribeConfigs), falls
back on the broker's default for a topic it cannot describe, and on Kafka's default for
a broker it cannot reach. Settings override both (an ACL may forbid describing).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, without __all__
    AdminClient,
    ConfigResource,
    ResourceType,
)

from stream.events import MAX_EVENT_BYTES
from stream.settings import StreamSettings

KAFKA_DEFAULT_MAX_BYTES: Final = 1_048_588
"""Kafka's default `message.max.bytes` (and so every topic's `max.message.bytes`)."""

_TIMEOUT_S: Final = 5.0

_HEADERS_ROOM: Final = 4096
"""Bytes a side record needs beside the copied value: headrace's headers and a user id."""

log = logging.getLogger("headrace.learner")


@dataclass(frozen=True, slots=True)
class PathLimits:
    """`max.message.bytes` of each topic the learner reads or writes."""

    events: int
    dlq: int
    quarantine: int


def path_limits(settings: StreamSettings) -> PathLimits:
    """The limits of settings' topics: the settings' overrides, else what the broker says."""
    asked = [
        topic
        for topic, override in (
            (settings.topic_events, settings.events_max_message_bytes),
            (settings.topic_dlq, settings.side_max_message_bytes),
            (settings.topic_quarantine, settings.side_max_message_bytes),
        )
        if override is None
    ]
    found = max_message_bytes(settings.kafka_bootstrap, asked) if asked else {}
    side = settings.side_max_message_bytes
    limits = PathLimits(
        events=settings.events_max_message_bytes or found[settings.topic_events],
        dlq=side or found[settings.topic_dlq],
        quarantine=side or found[settings.topic_quarantine],
    )
    log.info(
        "max.message.bytes: %s %d, %s %d, %s %d",
        settings.topic_events,
        limits.events,
        settings.topic_dlq,
        limits.dlq,
        settings.topic_quarantine,
        limits.quarantine,
    )
    if min(limits.dlq, limits.quarantine) < MAX_EVENT_BYTES + _HEADERS_ROOM:
        log.warning(
            "the side topics take batches of %d bytes: copies of records within the event "
            "contract's %d bytes may be cut to fit; give them a larger max.message.bytes",
            min(limits.dlq, limits.quarantine),
            MAX_EVENT_BYTES,
        )
    return limits


def max_message_bytes(
    bootstrap: str, topics: Sequence[str], timeout_s: float = _TIMEOUT_S
) -> dict[str, int]:
    """Each topic's `max.message.bytes` as the broker reports it.

    A topic that cannot be described (not created yet, not allowed) gets the broker's
    `message.max.bytes`, which is what it would be created with; a broker that does not
    answer, Kafka's default. Each fallback is logged: the learner works on regardless.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "headrace-limits",
        "logger": logging.getLogger("headrace.kafka"),
    }
    admin = AdminClient(config)
    limits: dict[str, int] = {}
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in dict.fromkeys(topics)]
    futures = admin.describe_configs(resources, request_timeout=timeout_s)
    for resource, future in futures.items():
        try:
            limits[resource.name] = int(future.result(timeout_s)["max.message.bytes"].value)
        except (KafkaException, TimeoutError, KeyError, ValueError) as exc:
            log.warning("cannot read max.message.bytes of %s: %s", resource.name, exc)
    missing = [topic for topic in topics if topic not in limits]
    if missing:
        default = _broker_default(admin, timeout_s)
        limits.update(dict.fromkeys(missing, default))
    return limits


def _broker_default(admin: AdminClient, timeout_s: float) -> int:
    """The smallest `message.max.bytes` of the brokers; Kafka's default if none answers."""
    found: list[int] = []
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
        resources = [ConfigResource(ResourceType.BROKER, str(b)) for b in brokers]
        for future in admin.describe_configs(resources, request_timeout=timeout_s).values():
            found.append(int(future.result(timeout_s)["message.max.bytes"].value))
    except (KafkaException, TimeoutError, KeyError, ValueError) as exc:
        log.warning("cannot read the brokers' message.max.bytes: %s", exc)
    if not found:
        log.warning("assuming Kafka's default message.max.bytes, %d", KAFKA_DEFAULT_MAX_BYTES)
        return KAFKA_DEFAULT_MAX_BYTES
    return min(found)
