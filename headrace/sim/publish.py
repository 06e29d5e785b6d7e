"""Publishing simulator records to Kafka: keyed, rate-limited, nothing dropped silently."""

import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from kafka import KafkaProducer
from kafka.errors import KafkaError

from headrace.sim.simulator import SimRecord, SimulatorConfig, generate
from stream.errors import PublishError
from stream.producer import make_producer
from stream.settings import StreamSettings

REPORT_TYPES: Final = (
    "impression",
    "click",
    "add_to_cart",
    "purchase",
    "labeled",
    "malformed",
    "attack",
)
_FLUSH_TIMEOUT_S: Final = 120.0
_BAR_STEP: Final = 256  # records per progress-bar update: tqdm per record costs more than Kafka


@dataclass
class SimReport:
    """What publish() delivered, by type; "attack" counts bot records across types."""

    counts: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind != "attack")

    @property
    def rate(self) -> float:
        """Records acknowledged per wall-clock second."""
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            **{kind: self.counts[kind] for kind in REPORT_TYPES},
            "total": self.total,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate": round(self.rate, 1),
        }

    def __str__(self) -> str:
        parts = ", ".join(f"{kind} {self.counts[kind]:,}" for kind in REPORT_TYPES)
        return (
            f"published {self.total:,} records in {self.elapsed_s:.1f} s "
            f"({self.rate:,.0f}/s): {parts}"
        )


class _TokenBucket:
    """Wall-clock rate limit; up to a tenth of a second of catch-up absorbs scheduler jitter."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        # Start with one token, not a full bucket, so `rate` x `duration` is what gets sent.
        self.tokens = 1.0
        self.last = time.monotonic()

    def take(self) -> None:
        if self.tokens < 1.0:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1.0:
                wait = (1.0 - self.tokens) / self.rate
                time.sleep(wait)
                self.tokens += wait * self.rate
                self.last += wait
        self.tokens -= 1.0


class _Failures:
    """Delivery callbacks record failures here; publish() checks and raises."""

    def __init__(self) -> None:
        self.count = 0
        self.first: BaseException | None = None

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        if self.first is None:
            self.first = exc

    def check(self, sent: int) -> None:
        if self.count:
            raise PublishError(
                f"Kafka did not acknowledge {self.count} of {sent} records sent so far; "
                f"first error: {self.first!r}"
            ) from self.first


def publish(
    producer: KafkaProducer,
    topic: str,
    records: Iterable[SimRecord],
    *,
    rate: float | None = None,
    progress: bool = False,
    total: int | None = None,
    duration: float | None = None,
) -> SimReport:
    """Send `records` keyed by user to `topic`, flush, and count what was acknowledged.

    `rate` caps records per second; `duration` stops after that many seconds;
    `total` sizes the progress bar (stderr). Raises PublishError as soon as a
    delivery fails (the rest is not sent) or when the final flush times out.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    bucket = _TokenBucket(rate) if rate else None
    failures = _Failures()
    counts: Counter[str] = Counter()
    bar = _progress_bar(total, duration, rate) if progress else None
    began = time.monotonic()
    deadline = began + duration if duration is not None else None
    sent = 0
    try:
        for record in records:
            if failures.count:
                failures.check(sent)
            if deadline is not None and time.monotonic() >= deadline:
                break
            if bucket is not None:
                bucket.take()
            try:
                future = producer.send(topic, value=record.value, key=record.key)
            except KafkaError as exc:
                raise PublishError(f"could not send to {topic!r}: {exc!r}") from exc
            future.add_errback(failures)
            counts[record.type] += 1
            counts["attack"] += record.is_attack
            sent += 1
            if bar is not None and sent % _BAR_STEP == 0:
                bar.update(_BAR_STEP)
        try:
            producer.flush(timeout=_FLUSH_TIMEOUT_S)
        except KafkaError as exc:
            raise PublishError(f"flushing {sent} records to {topic!r} failed: {exc!r}") from exc
        failures.check(sent)
    finally:
        if bar is not None:
            bar.update(sent % _BAR_STEP)
            bar.close()
    return SimReport(counts, time.monotonic() - began)


def _progress_bar(total: int | None, duration: float | None, rate: float | None) -> Any:
    if total is None and duration is not None and rate is not None:
        total = int(duration * rate)
    if total is None:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, smoothing=0.1)


def simulate(
    settings: StreamSettings,
    config: SimulatorConfig,
    rate: float | None = None,
    progress: bool = False,
    *,
    duration: float | None = None,
) -> SimReport:
    """Generate `config`'s records and publish them to settings.topic_events."""
    producer = make_producer(settings)
    try:
        return publish(
            producer,
            settings.topic_events,
            generate(config),
            rate=rate,
            progress=progress,
            total=config.count,
            duration=duration,
        )
    finally:
        producer.close(timeout=10)
