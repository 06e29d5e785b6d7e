"""What the failover tests run against the stack: a steady feed of events and /predict
clients that record every answer."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson

from headrace.sim.publish import publish
from headrace.sim.simulator import SimRecord, SimulatorConfig, world
from stream.producer import make_producer
from stream.settings import StreamSettings
from tests.api.helpers import request_body

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Answer:
    at: float
    """time.monotonic() when the answer came."""
    status: int
    epoch: int = -1
    version: int = -1
    degraded: bool = False


@dataclass
class Client:
    """One /predict client on one API replica, sequential, until stopped."""

    url: str
    bodies: list[bytes]
    answers: list[Answer] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> "Client":
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    response = client.post(
                        "/predict", content=self.bodies[i % len(self.bodies)], headers=JSON
                    )
                except httpx.TransportError as exc:
                    self.errors.append((time.monotonic(), repr(exc)))
                    continue
                now = time.monotonic()
                if response.status_code == 200:
                    got = response.json()
                    self.answers.append(
                        Answer(now, 200, got["epoch"], got["version"], got["degraded"])
                    )
                else:
                    self.answers.append(Answer(now, response.status_code))
                # A steady trickle, not a flood: the machine is shared with the servers.
                time.sleep(0.01)

    def server_errors(self) -> list[Answer]:
        return [a for a in self.answers if a.status >= 500]


def bodies(config: SimulatorConfig, n: int = 30) -> list[bytes]:
    shop = world(config)
    return [
        orjson.dumps(request_body(shop.request_for(u, np.random.default_rng(u), k=20)))
        for u in range(n)
    ]


class Feed:
    """Publishes records at `rate` a second in a thread (acks=all, idempotent)."""

    def __init__(self, settings: StreamSettings, records: Iterator[SimRecord], rate: float):
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(settings, records, rate), daemon=True
        )

    def start(self) -> "Feed":
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the feed did not finish"
        if self.error is not None:
            raise self.error

    def _run(self, settings: StreamSettings, records: Iterator[SimRecord], rate: float) -> None:
        producer = make_producer(settings)
        try:
            report = publish(producer, settings.topic_events, records, rate=rate)
            self.sent = report.total
        except BaseException as exc:  # handed to the test by join()
            self.error = exc
        finally:
            producer.close(timeout=30)
