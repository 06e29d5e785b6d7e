"""The API's Prometheus metrics, in a registry of each app (tests build many apps).

With several uvicorn workers each process counts for itself: scrape each one (one worker
per container), or add them up where you aggregate.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0)
# Each version is a label value: keep only the newest few per model and variant, or the
# series would grow with every publish (several a second).
_VERSIONS_KEPT = 3

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods that get a label value of their own; any other a client sends counts as "other"
(the HTTP parser takes any token as a method: each would be a new series)."""

ModelFacts = Callable[[], Iterable[tuple[str, int, int, float]]]
"""(model, epoch, version, published_at) of every loaded model."""


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "headrace_api_request_seconds",
            "Time to answer a request, by route",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.responses = Counter(
            "headrace_api_responses_total",
            "Responses by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.predictions = Counter(
            "headrace_api_predictions_total",
            "Requests answered, by model, variant and version",
            ["model", "variant", "version"],
            registry=r,
        )
        self.candidates = Histogram(
            "headrace_api_candidates",
            "Candidates per /predict request",
            buckets=(1, 10, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )
        self.degraded = Counter(
            "headrace_api_degraded_predictions_total",
            "Requests scored from empty aggregates: Redis unavailable or the state gone from it",
            registry=r,
        )
        self.cache = Counter(
            "headrace_api_cache_total",
            "Cache look-ups by cache (item: one per candidate, response: one per request "
            "of a user without history) and result",
            ["cache", "result"],
            registry=r,
        )
        self.fallbacks = Counter(
            "headrace_api_variant_fallbacks_total",
            "Requests whose split variant the shard lacks, answered by its first variant",
            ["model", "variant"],
            registry=r,
        )
        self.swaps = Counter(
            "headrace_api_model_swaps_total", "New versions swapped in", ["model"], registry=r
        )
        self.load_seconds = Histogram(
            "headrace_api_model_load_seconds",
            "Time to read and deserialize a version",
            ["model"],
            registry=r,
        )
        self.load_errors = Counter(
            "headrace_api_model_load_errors_total",
            "Versions that did not deserialize",
            ["model"],
            registry=r,
        )
        self.unverified = Counter(
            "headrace_api_model_unverified_total",
            "Versions refused before deserialization: their signature did not verify",
            ["model"],
            registry=r,
        )
        self.redis_errors = Counter(
            "headrace_api_redis_errors_total",
            "Failed Redis calls, by what made them",
            ["op"],
            registry=r,
        )
        self.impressions = Counter(
            "headrace_api_impressions_total", "Impression events sent to Kafka", registry=r
        )
        self.impressions_dropped = Counter(
            "headrace_api_impressions_dropped_total",
            "Impression events not delivered, by why",
            ["reason"],
            registry=r,
        )
        self.shadow = Counter(
            "headrace_api_shadow_predictions_total",
            "Requests the shadow variant also scored",
            ["model", "variant"],
            registry=r,
        )
        self.shadow_gap = Histogram(
            "headrace_api_shadow_abs_diff",
            "Mean |served - shadow| score of a request",
            ["model", "variant"],
            buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
            registry=r,
        )
        self.shadow_top1 = Counter(
            "headrace_api_shadow_top1_total",
            "Whether shadow and served agree on the best item",
            ["model", "variant", "agree"],
            registry=r,
        )
        self.cascade_candidates = Histogram(
            "headrace_api_cascade_candidates",
            "Candidates a cascade's stage scored per request, by model (shard), stage (first: "
            "the cheap variant, every candidate; then: the expensive variant, its re-scored "
            "span) and variant; the _sum is the candidates scored",
            ["model", "stage", "variant"],
            buckets=(0, 1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )
        self._versions: dict[tuple[str, str], list[str]] = {}
        self._stages: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._children: dict[tuple[str, str, int], Any] = {}
        self._state: Collector | None = None

    def predicted(self, model: str, variant: str, version: int) -> None:
        child = self._children.get((model, variant, version))
        if child is None:
            child = self._new_version(model, variant, version)
        child.inc()

    def cascaded(self, model: str, first: str, then: str, scored: int, rescored: int) -> None:
        """A cascade's request: `first` scored `scored` candidates, `then` `rescored`."""
        children = self._stages.get((model, first, then))
        if children is None:
            histogram = self.cascade_candidates
            children = self._stages[(model, first, then)] = (
                histogram.labels(model, "first", first),
                histogram.labels(model, "then", then),
            )
        children[0].observe(scored)
        children[1].observe(rescored)

    def _new_version(self, model: str, variant: str, version: int) -> Any:
        kept = self._versions.setdefault((model, variant), [])
        kept.append(str(version))
        while len(kept) > _VERSIONS_KEPT:
            old = kept.pop(0)
            self.predictions.remove(model, variant, old)
            self._children.pop((model, variant, int(old)), None)
        child = self._children[(model, variant, version)] = self.predictions.labels(
            model, variant, str(version)
        )
        return child

    def watch(
        self,
        facts: ModelFacts,
        ready: Callable[[], bool],
        redis_up: Callable[[], bool],
        missing: Callable[[], Iterable[str]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Report the models of this (latest) lifespan at scrape time; `missing` names the
        shards served from memory whose state is gone from Redis."""
        if self._state is not None:
            self.registry.unregister(self._state)
        self._state = _StateCollector(facts, ready, redis_up, missing, clock)
        self.registry.register(self._state)


class _StateCollector(Collector):
    """Gauges computed at scrape time: model version and age, readiness, Redis."""

    def __init__(
        self,
        facts: ModelFacts,
        ready: Callable[[], bool],
        redis_up: Callable[[], bool],
        missing: Callable[[], Iterable[str]],
        clock: Callable[[], float],
    ) -> None:
        self._facts, self._ready, self._redis_up, self._clock = facts, ready, redis_up, clock
        self._missing = missing

    def collect(self) -> Iterator[GaugeMetricFamily]:
        version = GaugeMetricFamily(
            "headrace_api_model_version", "Version served", labels=["model"]
        )
        epoch = GaugeMetricFamily(
            "headrace_api_model_epoch", "Epoch of the version served", labels=["model"]
        )
        age = GaugeMetricFamily(
            "headrace_api_model_age_seconds",
            "Now minus the served version's publish time",
            labels=["model"],
        )
        missing = GaugeMetricFamily(
            "headrace_api_state_missing",
            "1 while the served model's state is gone from Redis (served from memory)",
            labels=["model"],
        )
        now = self._clock()
        gone = set(self._missing())
        for model, era, number, published_at in self._facts():
            epoch.add_metric([model], era)
            version.add_metric([model], number)
            age.add_metric([model], max(0.0, now - published_at))
            missing.add_metric([model], model in gone)
        yield version
        yield epoch
        yield age
        yield missing
        redis_up = self._redis_up()
        yield GaugeMetricFamily("headrace_api_ready", "1 when /ready is 200", value=self._ready())
        yield GaugeMetricFamily("headrace_api_redis_up", "1 when Redis answers", value=redis_up)
        yield GaugeMetricFamily(
            "headrace_api_degraded",
            "1 while models are served from memory without Redis or their state in it",
            value=not redis_up or bool(gone),
        )


class LatencyMiddleware:
    """Times every HTTP request by its route template (not the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            if method not in _METHODS:
                method = "other"
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - started)
            self.metrics.responses.labels(path, method, str(status)).inc()
