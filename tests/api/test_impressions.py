"""Impressions: contract-valid events, never blocking a response, drops counted."""

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from pydantic import SecretStr

from api.impressions import ImpressionBatch, ImpressionPublisher, events
from api.schemas import Candidate, Context
from api.settings import ApiSettings
from api.telemetry import Metrics
from headrace.sim.simulator import generate, world
from stream.events import Impression, parse_event
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.api.helpers import request_body
from tests.learner.harness import InProcessLearner, end_offsets
from tests.support import WAIT_S, read_topic, wait_for

BATCH = ImpressionBatch(
    user_id="u00042",
    context=Context(query="merino dk", device="mobile", page="search", position=3),
    candidates=[
        Candidate("i00001", 9.5, "merino", "Drops"),
        Candidate("i00002", 0.0, "needles", None),
    ],
    impression_ids=["abc-0", "abc-1"],
    at=1_795_000_000.25,
)


def dropped(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "headrace_api_impressions_dropped_total", {"reason": reason}
    )
    return value or 0.0


def test_events_are_impressions_of_the_contract() -> None:
    parsed = [parse_event(raw) for raw in events(BATCH)]
    assert all(isinstance(event, Impression) for event in parsed)
    first, second = parsed
    assert isinstance(first, Impression) and isinstance(second, Impression)
    assert (first.user_id, first.item_id, first.impression_id) == ("u00042", "i00001", "abc-0")
    assert first.context.position == 3 and first.item.brand == "Drops"
    assert second.item.brand is None and second.item.price == 0.0
    assert first.ts.timestamp() == pytest.approx(BATCH.at)
    assert first.event_id != second.event_id


class StuckProducer:
    """A producer whose sends never return until released: Kafka hanging."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.release.wait()
        raise TimeoutError("released")

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    metrics = Metrics()
    producer = StuckProducer()
    publisher = ImpressionPublisher("events", lambda: producer, queue_size=2, metrics=metrics)
    publisher.start()
    accepted: list[bool] = []

    def offer_ten() -> None:
        accepted.extend(publisher.offer(BATCH) for _ in range(10))

    offers = threading.Thread(target=offer_ten)
    try:
        assert publisher.offer(BATCH)
        assert producer.entered.wait(WAIT_S), "the sending thread never took the first batch"
        # Kafka hangs in send from here on: ten offers must all return all the same.
        offers.start()
        offers.join(WAIT_S)
        assert not offers.is_alive(), "offer() waited for the stuck producer"
        assert not producer.release.is_set()
        # Two fit in the queue; the other eight are dropped and counted by impression.
        assert accepted == [True, True] + [False] * 8
        assert dropped(metrics, "queue_full") == 8 * len(BATCH.impression_ids)
    finally:
        producer.release.set()
        offers.join(WAIT_S)
        publisher.stop(timeout=5)


def test_kafka_away_drops_and_counts() -> None:
    metrics = Metrics()

    def no_kafka() -> Any:
        raise ConnectionError("no broker")

    publisher = ImpressionPublisher("events", no_kafka, queue_size=10, metrics=metrics)
    publisher.start()
    try:
        assert publisher.offer(BATCH)
        wait_for(lambda: dropped(metrics, "kafka_unavailable") >= 2, "the drops to be counted")
        assert dropped(metrics, "kafka_unavailable") == 2
    finally:
        publisher.stop(timeout=5)


KEY = "storefront-key-0123456789abc"
AUTH = {"X-API-Key": KEY}


@pytest.fixture
def trained(topics: StreamSettings, redis_client: redis.Redis) -> Iterator[StreamSettings]:
    """A published model over this test's own topics."""
    learner = InProcessLearner(topics, redis_client)
    learner.process(generate(SMALL.model_copy(update={"count": 3000})))
    learner.publish()
    yield topics
    learner.close()


def published(topics: StreamSettings, expected: int) -> dict[str, tuple[bytes, Impression]]:
    """Every impression on the events topic, by impression id, once `expected` are there.

    Called after the app has stopped: its publisher sent what was queued on the way out,
    so what is on the topic then is all there will be."""
    wait_for(lambda: sum(end_offsets(topics).values()) >= expected, f"{expected} impressions")
    seen: dict[str, tuple[bytes, Impression]] = {}
    for record in read_topic(topics, topics.topic_events):
        event = parse_event(record.value)
        assert isinstance(event, Impression)
        seen[event.impression_id] = (record.key, event)
    return seen


def request(k: int) -> Any:
    return world(SMALL).request_for(5, np.random.default_rng(0), k=k)


@pytest.mark.integration
def test_an_authenticated_caller_publishes_the_returned_candidates(
    trained: StreamSettings,
) -> None:
    shown = request(8)
    with running_app(ApiSettings(api_keys=[SecretStr(KEY)]), trained) as client:
        quiet = client.post("/predict", json=request_body(shown), headers=AUTH).json()
        loud = client.post(
            "/predict",
            json=request_body(shown, top_k=3, publish_impressions=True),
            headers=AUTH,
        )
        assert loud.status_code == 200
        returned = loud.json()["scores"]
    seen = published(trained, 3)
    assert set(seen) == {s["impression_id"] for s in returned}
    assert not {s["impression_id"] for s in quiet["scores"]} & set(seen)
    for score in returned:
        key, event = seen[score["impression_id"]]
        assert key == shown.user_id.encode()
        assert event.item_id == score["item_id"]
        # The context the candidates were scored in, as sent.
        assert event.context == shown.context


@pytest.mark.integration
def test_an_anonymous_caller_cannot_publish_impressions(trained: StreamSettings) -> None:
    body = request_body(request(8), publish_impressions=True)
    with running_app(ApiSettings(), trained) as client:
        refused = client.post("/predict", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        assert "API key" in refused.json()["error"]["message"]
        assert client.post("/predict", json={**body, "publish_impressions": False}).is_success
        assert client.post("/predict", json={**body, "publish_impressions": None}).is_success
    assert published(trained, 0) == {}


@pytest.mark.integration
def test_the_server_setting_publishes_at_most_max_impressions_a_response(
    trained: StreamSettings,
) -> None:
    api = ApiSettings(publish_impressions=True, max_impressions=3)
    with running_app(api, trained) as client:
        # Anyone may send the flag the server already applies, or turn it off.
        everything = client.post("/predict", json=request_body(request(8))).json()["scores"]
        explicit = request_body(request(8), publish_impressions=True)
        assert client.post("/predict", json=explicit).status_code == 200
        off = request_body(request(8), publish_impressions=False)
        assert client.post("/predict", json=off).status_code == 200
        metrics = client.get("/metrics").text
    seen = published(trained, 6)
    # The first three returned candidates of each of the two publishing responses.
    assert len(seen) == 6
    assert {s["impression_id"] for s in everything[:3]} <= set(seen)
    assert 'headrace_api_impressions_dropped_total{reason="request_cap"} 10.0' in metrics
