"""Fixtures shared by every test folder.

Integration tests run against the real Kafka broker and Redis server that
`scripts/test` starts (its settings arrive through HEADRACE_* variables).
Each test gets its own topics and its own Redis key prefix, so tests never
see each other's data.
"""

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from learner.redisconn import connect
from stream.settings import StreamSettings
from tests.support import own_topics


@pytest.fixture(scope="session")
def stack_settings() -> StreamSettings:
    """Settings of the running test stack; skips nothing: a missing stack is a failure."""
    if "HEADRACE_KAFKA_BOOTSTRAP" not in os.environ:
        pytest.fail("integration tests need the stack that scripts/test starts (run scripts/test)")
    return StreamSettings()


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, for topics and key prefixes."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def settings(stack_settings: StreamSettings, unique: str) -> StreamSettings:
    """Stack settings with this test's own topics and Redis key prefix."""
    return own_topics(stack_settings, f"test:{unique}", unique)


@pytest.fixture
def redis_client(settings: StreamSettings) -> Iterator[redis.Redis]:
    client: redis.Redis = connect(settings)
    yield client
    keys = list(client.scan_iter(match=f"{settings.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def topics(settings: StreamSettings) -> StreamSettings:
    """This test's settings, with its events, dead-letter and quarantine topics created."""
    from stream.topics import ensure_topics

    ensure_topics(settings)
    return settings


@pytest.fixture
def one_partition(settings: StreamSettings) -> StreamSettings:
    """This test's settings with one-partition topics: one total order, exact replays."""
    from stream.topics import ensure_topics

    one = settings.model_copy(update={"partitions": 1})
    ensure_topics(one)
    return one
