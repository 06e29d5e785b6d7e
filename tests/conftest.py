"""Fixtures shared by every test folder.

Integration tests run against the real Kafka broker and Redis server that
`scripts/test` starts (its settings arrive through HEADRACE_* variables).
Each test gets its own topics and its own Redis key prefix, so tests never
see each other's data.
"""

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from learner.redisconn import connect
from stream.settings import StreamSettings
from tests.support import own_topics

# A folder whose tests share servers on fixed ports (a package-scoped fixture) runs whole
# on one worker.
_ONE_WORKER_FOLDERS = ("failover",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How `pytest -n N` (scripts/test) shares the tests among its workers: each file
    whole on one worker, so its module-scoped servers and streams are made once, and each
    folder of `_ONE_WORKER_FOLDERS` whole on one worker. (pytest-xdist's own
    `--dist loadgroup` marks do not reach its scheduler under pytest 9.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            parts = path.split("/")
            if len(parts) > 2 and parts[1] in _ONE_WORKER_FOLDERS:
                return parts[1]
            return path

    return ByFile(config, log)


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-API server on 127.0.0.1 for the whole session; its endpoint URL."""
    from tests.s3server import moto_server

    with moto_server(tmp_path_factory.mktemp("s3") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_url(s3_server: str, monkeypatch: pytest.MonkeyPatch, unique: str) -> str:
    """An empty bucket of its own on the local S3 server, as s3://bucket/prefix, with the
    usual AWS variables pointing every client of this test at the server."""
    import boto3

    from tests.s3server import AWS_ENV

    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    bucket = f"headrace-{unique}"
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/snapshots/"
