"""Publishing what /predict returned as `impression` events, without making it wait.

A request only puts one batch on a bounded queue (a few hundred nanoseconds); a thread
with its own KafkaProducer turns batches into events of the contract (stream.events,
keyed by user_id) and sends them. When the queue is full or Kafka is away, the batch is
dropped and counted (headrace_api_impressions_dropped_total): a storefront's response is
worth more than a training example.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from api.schemas import Candidate, Context
from api.telemetry import Metrics

log = logging.getLogger("headrace.api")

ProducerFactory = Callable[[], Any]
"""Builds the KafkaProducer (raises when Kafka cannot be reached)."""


@dataclass(frozen=True, slots=True)
class ImpressionBatch:
    """The returned candidates of one response, as shown to one user."""

    user_id: str
    context: Context
    candidates: Sequence[Candidate]
    impression_ids: Sequence[str]
    at: float


def events(batch: ImpressionBatch) -> list[bytes]:
    """The batch as `impression` events, exactly as stream.events.dump_event writes them."""
    ts = datetime.fromtimestamp(batch.at, UTC).isoformat()
    ctx = batch.context
    context = {
        "query": ctx.query,
        "device": ctx.device,
        "page": ctx.page,
        "position": ctx.position,
    }
    out: list[bytes] = []
    for candidate, impression_id in zip(batch.candidates, batch.impression_ids, strict=True):
        item: dict[str, Any] = {"price": candidate.price, "category": candidate.category}
        if candidate.brand is not None:
            item["brand"] = candidate.brand
        event = {
            "event_id": f"ev-{impression_id}",
            "ts": ts,
            "user_id": batch.user_id,
            "type": "impression",
            "impression_id": impression_id,
            "item_id": candidate.item_id,
            "context": context,
            "item": item,
        }
        out.append(orjson.dumps(event))
    return out


class ImpressionPublisher:
    """A bounded queue of batches and the thread that sends them."""

    def __init__(
        self, topic: str, producer_factory: ProducerFactory, queue_size: int, metrics: Metrics
    ) -> None:
        self._topic = topic
        self._factory = producer_factory
        self._queue: queue.Queue[ImpressionBatch] = queue.Queue(maxsize=queue_size)
        self._metrics = metrics
        self._producer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0

    def offer(self, batch: ImpressionBatch) -> bool:
        """Queue `batch` for sending; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._metrics.impressions_dropped.labels("queue_full").inc(len(batch.impression_ids))
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="headrace-impressions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to `timeout`), then close the producer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout)
            except Exception as exc:  # closing must not fail a shutdown
                log.warning("impression producer did not close cleanly: %s", exc)

    def _run(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    break
                continue
            self._send(batch)
        if self._producer is not None:
            try:
                self._producer.flush(timeout=5)
            except Exception as exc:
                log.warning("impressions not flushed at shutdown: %s", exc)

    def _send(self, batch: ImpressionBatch) -> None:
        producer = self._connect()
        payloads = events(batch)
        if producer is None:
            self._metrics.impressions_dropped.labels("kafka_unavailable").inc(len(payloads))
            return
        key = batch.user_id.encode()
        for payload in payloads:
            try:
                future = producer.send(self._topic, value=payload, key=key)
            except Exception as exc:  # KafkaTimeoutError, buffer full, closed producer ...
                self._metrics.impressions_dropped.labels("kafka_error").inc()
                log.warning("impression not sent: %s", type(exc).__name__)
                continue
            future.add_callback(self._delivered)
            future.add_errback(self._failed)

    def _delivered(self, _: object) -> None:
        self._metrics.impressions.inc()

    def _failed(self, exc: BaseException) -> None:
        self._metrics.impressions_dropped.labels("kafka_error").inc()

    def _connect(self) -> Any:
        if self._producer is not None:
            return self._producer
        now = time.monotonic()
        if now < self._retry_at:
            return None
        try:
            self._producer = self._factory()
        except Exception as exc:
            # Try again in a few seconds; until then batches are dropped, not queued forever.
            self._retry_at = now + 5.0
            log.warning("cannot reach Kafka for impressions: %s", exc)
            return None
        return self._producer
