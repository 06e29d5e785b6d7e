"""The limits the learner reads from the broker, and the fetch sizes that follow from them."""

import logging

import pytest
from confluent_kafka import Consumer

from stream.limits import KAFKA_DEFAULT_MAX_BYTES, max_message_bytes, path_limits
from stream.reader import fetch_sizes
from stream.settings import StreamSettings
from tests.support import create_topic


@pytest.mark.integration
def test_each_topic_reports_its_own_limit_and_a_missing_one_the_brokers(
    settings: StreamSettings,
) -> None:
    small = create_topic(settings, settings.topic_dlq, {"max.message.bytes": "12345"})
    plain = create_topic(settings, settings.topic_events)
    found = max_message_bytes(settings.kafka_bootstrap, [small, plain, settings.topic_quarantine])
    # The test stack's broker states Kafka's default, message.max.bytes=1048588, explicitly.
    assert found == {
        small: 12_345,
        plain: KAFKA_DEFAULT_MAX_BYTES,
        settings.topic_quarantine: KAFKA_DEFAULT_MAX_BYTES,
    }


@pytest.mark.integration
def test_settings_override_what_the_broker_says(settings: StreamSettings) -> None:
    create_topic(settings, settings.topic_dlq, {"max.message.bytes": "12345"})
    pinned = settings.model_copy(
        update={"side_max_message_bytes": 4_000, "events_max_message_bytes": 200_000_000}
    )
    limits = path_limits(pinned)
    assert (limits.events, limits.dlq, limits.quarantine) == (200_000_000, 4_000, 4_000)
    assert path_limits(settings).dlq == 12_345


def test_side_topics_smaller_than_the_event_contract_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Both limits set: the broker is not asked.
    pinned = StreamSettings(
        kafka_bootstrap="127.0.0.1:1", side_max_message_bytes=20_000, events_max_message_bytes=1
    )
    with caplog.at_level(logging.WARNING, "headrace.learner"):
        assert path_limits(pinned).dlq == 20_000
    assert "copies of records within the event contract's 65536 bytes may be cut" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "headrace.learner"):
        path_limits(pinned.model_copy(update={"side_max_message_bytes": 1_048_588}))
    assert caplog.text == ""


def test_an_unreachable_broker_leaves_kafkas_default() -> None:
    found = max_message_bytes("127.0.0.1:1", ["events"], timeout_s=0.5)
    assert found == {"events": KAFKA_DEFAULT_MAX_BYTES}


def test_fetch_sizes_keep_librdkafkas_defaults_for_ordinary_limits() -> None:
    assert fetch_sizes(KAFKA_DEFAULT_MAX_BYTES) == {
        "fetch.max.bytes": 52_428_800,
        "receive.message.max.bytes": 100_000_000,
    }


@pytest.mark.parametrize("limit", [200_000_000, 2**31 - 1])
def test_fetch_sizes_take_in_a_batch_as_large_as_the_topic_allows(limit: int) -> None:
    sizes = fetch_sizes(limit)
    assert sizes["receive.message.max.bytes"] > min(limit, 2**31 - 2**20)
    assert sizes["receive.message.max.bytes"] >= sizes["fetch.max.bytes"] + 512
    # librdkafka accepts them (it checks its own constraints when a client is made).
    Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "limits", **sizes}).close()
