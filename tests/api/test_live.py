"""The API as it runs: `headrace serve` (uvicorn, one worker) beside `headrace learn`.

- hot swap under load: the learner publishes versions continuously while a client sends
  requests; no request fails and the versions a client sees never go down;
- end to end: simulator -> Kafka -> learner -> Redis -> /predict answers with a newly
  published version within a second of its publish;
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
    recent_config,
    request_body,
)
from tests.learner.harness import InProcessLearner, LearnerProcess, learner_env, send, wait_until
from tests.support import free_port

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
    errors: list[str] = field(default_factory=list)


def hammer(url: str, stop: threading.Event, seen: Observed, limit: int = 50_000) -> None:
    """Sequential requests on one keep-alive connection, until `stop` (or `limit`)."""
    with httpx.Client(base_url=url, timeout=5.0) as client:
        for i in range(limit):
            if stop.is_set():
                return
            try:
                response = client.post("/predict", content=BODIES[i % len(BODIES)], headers=JSON)
            except httpx.TransportError as exc:
                seen.errors.append(repr(exc))
                continue
            seen.statuses.append(response.status_code)
            if response.status_code == 200:
                got = response.json()
                seen.versions.append(got["version"])
                seen.degraded.append((time.monotonic(), got["degraded"]))


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
    api = ApiProcess(api_env(topics), tmp_path / "api.log")
    try:
        api.wait_listening()
        wait_until(lambda: httpx.get(f"{api.url}/ready").status_code == 200, 60, "ready")
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
    stack: tuple[StreamSettings, ApiProcess, LearnerProcess],
) -> None:
    settings, api, _ = stack
    feeder = feed(settings, rate=3_000, seconds=10)
    stop = threading.Event()
    seen = [Observed(), Observed()]
    clients = [threading.Thread(target=hammer, args=(api.url, stop, s)) for s in seen]
    for thread in clients:
        thread.start()
    feeder.join(60)
    time.sleep(1.0)
    stop.set()
    for thread in clients:
        thread.join(30)
    for observed in seen:
        assert observed.errors == []
        assert set(observed.statuses) == {200}
        assert len(observed.statuses) > 200
        assert observed.versions == sorted(observed.versions), "a version went backwards"
    distinct = {v for observed in seen for v in observed.versions}
    print(f"{sum(len(o.statuses) for o in seen)} requests, versions seen: {len(distinct)}")
    assert len(distinct) >= 10


def test_a_published_version_is_served_within_a_second(
    stack: tuple[StreamSettings, ApiProcess, LearnerProcess], redis_client: redis.Redis
) -> None:
    settings, api, _ = stack
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(versions_channel(settings.key_prefix))
    feeder = feed(settings, rate=1_000, seconds=8)
    delays: list[float] = []
    with httpx.Client(base_url=api.url, timeout=5.0) as client:
        deadline = time.monotonic() + 20
        while len(delays) < 8 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            published = time.monotonic()
            version = int(orjson.loads(message["data"])["version"])
            while time.monotonic() - published < 2.0:
                response = client.post("/predict", content=BODIES[0], headers=JSON)
                if response.json()["version"] >= version:
                    break
            delays.append(time.monotonic() - published)
            # Skip what was published meanwhile: measure each version afresh.
            while pubsub.get_message(timeout=0) is not None:
                pass
    feeder.join(60)
    pubsub.close()
    print("publish to served (s):", [round(d, 4) for d in delays])
    assert len(delays) >= 5
    assert max(delays) < 1.0


def test_redis_restart_under_load(tmp_path: Path, stack_settings: StreamSettings) -> None:
    own = stack_settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
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
        wait_until(lambda: httpx.get(ready).status_code == 200, 30, "ready")
        stop = threading.Event()
        seen = Observed()
        load = threading.Thread(target=hammer, args=(api.url, stop, seen))
        load.start()
        time.sleep(1.0)

        redis_local.stop(own)
        down_at = time.monotonic()
        wait_until(lambda: httpx.get(ready).status_code == 503, 5, "/ready to see the outage")
        reasons = httpx.get(ready).json()["reasons"]
        assert any(reason.startswith("redis") for reason in reasons)
        time.sleep(2.0)

        redis_local.start(own)
        up_at = time.monotonic()
        wait_until(lambda: httpx.get(ready).status_code == 200, 10, "/ready after the restart")
        back_after = time.monotonic() - up_at
        time.sleep(1.0)
        stop.set()
        load.join(30)

        assert seen.errors == []
        assert all(status < 500 for status in seen.statuses), set(seen.statuses)
        assert set(seen.statuses) == {200}
        during = [d for t, d in seen.degraded if down_at + 0.5 < t < up_at]
        after = [d for t, d in seen.degraded if t > up_at + back_after + 0.5]
        assert during and all(during), "answers during the outage say they are degraded"
        assert after and not any(after), "answers after the restart use the aggregates again"
        metrics = httpx.get(f"{api.url}/metrics").text
        assert "headrace_api_degraded_predictions_total" in metrics
        print(f"{len(seen.statuses)} requests; ready again {back_after:.2f} s after Redis")
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
