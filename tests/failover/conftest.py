"""A stack of its own for the failover tests: three Kafka brokers and Redis with Sentinel.

Started once for the folder, on ports 400 above the test stack's broker (brokers on
P, P+2, P+4 with controllers on the odd ports, the Redis primary on P+10, its replica on
P+11 and three sentinels on P+12..P+14), in a folder of its own, and stopped at the end.
The tests kill its servers, so it is never the stack the other tests share.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from headrace.devstack import stack
from learner.redisconn import connect
from stream.settings import StreamSettings
from tests.support import own_topics

PORT_OFFSET = 400


@pytest.fixture(scope="package")
def cluster_stack(stack_settings: StreamSettings) -> Iterator[StreamSettings]:
    base = stack_settings.kafka_host_port[1] + PORT_OFFSET
    folder = Path(tempfile.mkdtemp(prefix="headrace-cluster-"))
    settings = StreamSettings(
        kafka_bootstrap=f"127.0.0.1:{base}",
        controller_port=base + 1,
        kafka_brokers=3,
        redis_url=f"redis://127.0.0.1:{base + 10}/0",
        redis_sentinels="",
        stack_redis="sentinel",
        stack_dir=str(folder),
        kafka_cache_dir=os.environ.get("HEADRACE_KAFKA_CACHE_DIR", stack_settings.kafka_cache_dir),
        # Three brokers beside the test stack's: a smaller heap each.
        kafka_heap="256m",
    )
    try:
        stack.up(settings, kafka_timeout=180, redis_timeout=60)
        yield settings
    finally:
        stack.down(settings, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster(cluster_stack: StreamSettings, unique: str) -> Iterator[StreamSettings]:
    """The failover stack with this test's own topics (created) and key prefix."""
    from stream.topics import ensure_topics

    settings = own_topics(cluster_stack, f"test:{unique}", unique)
    ensure_topics(settings)
    yield settings


@pytest.fixture
def cluster_redis(cluster: StreamSettings) -> Iterator[redis.Redis]:
    """A client of whichever server the sentinels call the primary."""
    client: redis.Redis = connect(cluster)
    yield client
    client.close()
