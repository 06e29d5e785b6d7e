"""Fixtures of the API tests: real models in the test Redis, the app with its lifespan."""

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from headrace.sim.simulator import SimulatorConfig, generate
from learner.compose import build_worker
from learner.recovery import Snapshots
from learner.redisconn import connect
from learner.settings import LearnerSettings
from stream.settings import StreamSettings
from tests.learner.harness import InProcessLearner, running_worker, send
from tests.support import learner_seal, signing_key, wait_for

SMALL = SimulatorConfig(seed=21, count=8_000, n_users=200, n_items=120)
"""A quick stream: enough for a model with an opinion, in well under a second."""

CLIENT_API = ApiSettings(max_candidates=50, max_body_bytes=64 * 1024)
"""Settings of the `client` fixture's app."""


@pytest.fixture
def learner(settings: StreamSettings, redis_client: redis.Redis) -> Iterator[InProcessLearner]:
    """The learner's core with a logistic and a tree variant, trained on SMALL, published."""
    trained = InProcessLearner(settings, redis_client, {"main": "logreg", "tree": "tree"})
    trained.process(generate(SMALL))
    trained.publish()
    yield trained
    trained.close()


@contextmanager
def running_app(
    api: ApiSettings,
    stream: StreamSettings,
    *,
    clock: Callable[[], float] = time.time,
    wait_ready: bool = True,
) -> Iterator[TestClient]:
    """The app in-process with its lifespan (background threads and all) running; it
    verifies with the tests' public key and holds no signing key, as `headrace serve`."""
    app = create_app(api, stream, verify_keys=(signing_key().public,), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        if wait_ready:
            wait_for_ready(client)
        yield client


@contextmanager
def owning_learner(
    topics: StreamSettings, redis_client: redis.Redis, snapshots: Snapshots
) -> Iterator[None]:
    """A real learner (the worker of `headrace learn`, in a thread) that owns the shard and
    has learned SMALL from Kafka when this is entered: the API's snapshot operations go to
    it. It must still run when the block ends."""
    send(topics, generate(SMALL))
    learner_settings = LearnerSettings(
        metrics_port=0, lease_ttl_ms=20_000, group_id=topics.key_prefix, poll_max_records=500
    )
    worker = build_worker(
        topics, learner_settings, redis_client, seal=learner_seal(), snapshots=snapshots
    )
    with running_worker(worker, redis_client, topics, 120, "the learner") as thread:
        yield
        assert thread.is_alive(), "the learner stopped"


def wait_for_ready(client: TestClient) -> None:
    try:
        wait_for(lambda: client.get("/ready").status_code == 200, "/ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {client.get('/ready').json()}") from None


@pytest.fixture(scope="module")
def shared_settings(stack_settings: StreamSettings) -> Iterator[StreamSettings]:
    """A key prefix for a whole module, for tests that only read what one model answers."""
    settings = stack_settings.model_copy(
        update={"key_prefix": f"test:{'m' + uuid.uuid4().hex[:12]}"}
    )
    yield settings
    client: redis.Redis = connect(settings)
    keys = list(client.scan_iter(match=f"{settings.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def client(shared_settings: StreamSettings) -> Iterator[TestClient]:
    """The app (50 candidates, 64 KiB bodies at most) over a model trained on SMALL, ready."""
    redis_client: redis.Redis = connect(shared_settings)
    trained = InProcessLearner(shared_settings, redis_client, {"main": "logreg", "tree": "tree"})
    trained.process(generate(SMALL))
    trained.publish()
    trained.close()
    with running_app(CLIENT_API, shared_settings) as c:
        yield c
    redis_client.close()
