"""The API as it runs: `headrace serve` (uvicorn, one worker) beside `headrace learn`.

- hot swap under load: the learner publishes versions continuously while a client sends
  requests; no request fails and the versions a client sees never go down;
- end to end: simulator -> Kafka -> learner -> Redis -> /predict answers with each newly
  published version, brought by pub/sub (the poll is set to a minute);
- a Redis restart under load: no 5xx while the model is in memory, /ready follows the
  outage, and the API catches up when Redis is back (a Redis of this test's own);
- an endless chunked body is refused with 413 before it ends.
"""

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import redis

from headrace.devstack import redis_local
from headrace.sim.publish import publish
from headrace.sim.simulator import generate, world
from learner.layout import versions_channel
from learner.redisconn import connect
from stream.producer import make_producer
from stream.settings import StreamSettings
from tests.api.conftest import SMALL
from tests.api.helpers import (
    JOIN_WINDOW_S,
    ApiProcess,
    api_env,
    metric,
    recent_config,
    request_body,
)
from tests.learner.harness import (
    InProcessLearner,
    LearnerProcess,
    caught_up,
    end_offsets,
    learner_env,
    send,
    store,
)
from tests.support import WAIT_S, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = recent_config(seed=31, count=200_000, n_users=400, n_items=150)
BODIES = [
    orjson.dumps(request_body(world(STREAM).request_for(u, np.random.default_rng(u), k=20)))
    for u in range(50)
]
JSON = {"content-type": "application/json"}


@dataclass
class Observed:
    statuses: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    degraded: list[tuple[float, bool]] = field(default_factory=list)
    """(when the request was sent, whether its answer said degraded)"""
    errors: list[str] = field(default_factory=list)


def hammer(url: str, stop: threading.Event, seen: Observed, limit: int = 50_000) -> None:
    """Sequential requests on one keep-alive connection, until `stop` (or `limit`)."""
    with httpx.Client(base_url=url, timeout=5.0) as client:
        for i in range(limit):
            if stop.is_set():
                return
            sent = time.monotonic()
            try:
                response = client.post("/predict", content=BODIES[i % len(BODIES)], headers=JSON)
            except httpx.TransportError as exc:
                seen.errors.append(repr(exc))
                continue
            seen.statuses.append(response.status_code)
            if response.status_code == 200:
                got = response.json()
                seen.versions.append(got["version"])
                seen.degraded.append((sent, got["degraded"]))


@pytest.fixture
def stack(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[StreamSettings, ApiProcess, LearnerProcess]]:
    """A learner subprocess with a first version published, and the API serving it."""
    records = generate(STREAM)
    send(topics, (next(records) for _ in range(3_000)))
    # The learner takes snapshots; the development key is enough for a test.
    env = learner_env(
        topics,
        join_window_s=JOIN_WINDOW_S,
        snapshot_dev_key="true",
        snapshot_dir=tmp_path / "snapshots",
    )
    learner = LearnerProcess(env, tmp_path / "learner.log")
    # The poll comes once a minute at most, so a swap seen here was brought by pub/sub.
    api = ApiProcess(api_env(topics, model_poll_s=60), tmp_path / "api.log")
    try:
        api.wait_listening()
        wait_for(lambda: httpx.get(f"{api.url}/ready").status_code == 200, "ready")
        yield topics, api, learner
    finally:
        api.close()
        learner.close()


def feed(settings: StreamSettings, rate: float, seconds: float) -> threading.Thread:
    """Publish the rest of the stream at `rate` records/s for `seconds`, in a thread."""
    records = generate(STREAM)
    for _ in range(3_000):
        next(records)

    def run() -> None:
        producer = make_producer(settings)
        try:
            publish(producer, settings.topic_events, records, rate=rate, duration=seconds)
        finally:
            producer.close(timeout=10)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_versions_swap_under_load_without_errors(
    stack: tuple[StreamSettings, ApiProcess, LearnerProcess], redis_client: redis.Redis
) -> None:
    settings, api, _ = stack
    feeder = feed(settings, rate=3_000, seconds=10)
    stop = threading.Event()
    seen = [Observed(), Observed()]
    clients = [threading.Thread(target=hammer, args=(api.url, stop, s)) for s in seen]
    for thread in clients:
        thread.start()
    try:
        feeder.join(WAIT_S)
        assert not feeder.is_alive(), "the feed did not finish"
        ends = end_offsets(settings)
        wait_for(lambda: caught_up(redis_client, settings, ends), "the learner to catch up")
        newest = store(redis_client, settings).version()
        wait_for(
            lambda: all(o.versions and o.versions[-1] >= newest for o in seen),
            f"both clients to be served version {newest}",
        )
    finally:
        stop.set()
        for thread in clients:
            thread.join(WAIT_S)
    for observed in seen:
        assert observed.errors == []
        assert set(observed.statuses) == {200}
        assert len(observed.statuses) > 200
        assert observed.versions == sorted(observed.versions), "a version went backwards"
    distinct = {v for observed in seen for v in observed.versions}
    print(f"{sum(len(o.statuses) for o in seen)} requests, versions seen: {len(distinct)}")
    assert len(distinct) >= 10


def test_each_published_version_is_served_without_waiting_for_the_poll(
    stack: tuple[StreamSettings, ApiProcess, LearnerProcess], redis_client: redis.Redis
) -> None:
    settings, api, _ = stack
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(versions_channel(settings.key_prefix))
    feeder = feed(settings, rate=1_000, seconds=8)
    delays: list[float] = []
    try:
        with httpx.Client(base_url=api.url, timeout=5.0) as client:
            for _ in range(5):
                message = wait_for(lambda: pubsub.get_message(timeout=1.0), "a publish")
                published = time.monotonic()
                version = int(orjson.loads(message["data"])["version"])

                def served(v: int = version) -> bool:
                    answer = client.post("/predict", content=BODIES[0], headers=JSON).json()
                    return int(answer["version"]) >= v

                # Within the deadline the minute's poll cannot have come: pub/sub brought it.
                wait_for(served, f"version {version} to be served", timeout=30)
                delays.append(time.monotonic() - published)
                # Skip what was published meanwhile: measure each version afresh.
                while pubsub.get_message(timeout=0) is not None:
                    pass
    finally:
        feeder.join(WAIT_S)
        pubsub.close()
    print("publish to served (s):", [round(d, 4) for d in delays])


def test_redis_restart_under_load(tmp_path: Path, stack_settings: StreamSettings) -> None:
    own = stack_settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            # One server of its own, even when the test stack runs Sentinel.
            "redis_sentinels": "",
            "stack_redis": "single",
            "stack_dir": str(tmp_path / "stack"),
            "key_prefix": "restart",
        }
    )
    redis_local.start(own)
    api: ApiProcess | None = None
    try:
        client: redis.Redis = connect(own)
        trained = InProcessLearner(own, client)
        trained.process(generate(SMALL))
        trained.publish()
        trained.close()
        client.close()
        api = ApiProcess(api_env(own), tmp_path / "api.log")
        api.wait_listening()
        ready = f"{api.url}/ready"
        wait_for(lambda: httpx.get(ready).status_code == 200, "ready")
        stop = threading.Event()
        seen = Observed()
        load = threading.Thread(target=hammer, args=(api.url, stop, seen))
        load.start()

        def answers_since(t: float, n: int = 20) -> bool:
            return sum(sent > t for sent, _ in seen.degraded) >= n

        try:
            wait_for(lambda: answers_since(0), "answers before the outage")
            redis_local.stop(own)
            wait_for(lambda: httpx.get(ready).status_code == 503, "/ready to see the outage")
            noticed_at = time.monotonic()
            reasons = httpx.get(ready).json()["reasons"]
            assert any(reason.startswith("redis") for reason in reasons)
            wait_for(lambda: answers_since(noticed_at), "answers during the outage")

            restart_at = time.monotonic()
            redis_local.start(own)
            wait_for(lambda: httpx.get(ready).status_code == 200, "/ready after the restart")
            ready_at = time.monotonic()
            wait_for(lambda: answers_since(ready_at), "answers after the restart")
        finally:
            stop.set()
            load.join(WAIT_S)

        assert seen.errors == []
        assert all(status < 500 for status in seen.statuses), set(seen.statuses)
        assert set(seen.statuses) == {200}
        # Sent once /ready had seen Redis go, before it was started again: from empty
        # aggregates.
        during = [d for t, d in seen.degraded if noticed_at < t < restart_at]
        # Sent once /ready had seen it back: with the aggregates again.
        after = [d for t, d in seen.degraded if t > ready_at]
        assert during and all(during), "answers during the outage say they are degraded"
        assert after and not any(after), "answers after the restart use the aggregates again"
        # The counter counts exactly the degraded answers (this client sent every request).
        degraded = sum(d for _, d in seen.degraded)
        assert metric(api.url, "headrace_api_degraded_predictions_total") == degraded
        back_after = ready_at - restart_at
        print(f"{len(seen.statuses)} requests; ready again {back_after:.2f} s after the restart")
    finally:
        if api is not None:
            api.close()
        redis_local.stop(own)


def test_an_endless_chunked_body_is_cut_off_early(settings: StreamSettings, tmp_path: Path) -> None:
    api = ApiProcess(api_env(settings, max_body_bytes=4096), tmp_path / "api.log")
    try:
        api.wait_listening()
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b" " * 1024
            # Twice the limit, and never the final zero-length chunk.
            for _ in range(8):
                sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            answer = b""
            while b"body_too_large" not in answer and (part := sock.recv(4096)):
                answer += part
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert b"body_too_large" in answer
    finally:
        api.close()
