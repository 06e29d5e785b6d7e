"""The learner's Prometheus metrics (served by `headrace learn` on its own port)."""

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "headrace_learner_events_total", "Records consumed, by event type", ["shard", "type"]
)
REJECTED = Counter(
    "headrace_learner_rejected_total",
    "Records sent to the dead-letter topic, by reason",
    ["shard", "reason"],
)
SIDE_TRUNCATED = Counter(
    "headrace_learner_side_truncated_total",
    "Records copied to a side topic cut to fit its max.message.bytes",
    ["shard", "topic"],
)
SIDE_ERRORS = Counter(
    "headrace_learner_side_errors_total",
    "Records a side topic refused or did not acknowledge, by Kafka error",
    ["shard", "topic", "error"],
)
SIDE_LOST = Counter(
    "headrace_learner_side_lost_total",
    "Records a side topic refused in every form: only the learner's log names them",
    ["shard", "topic"],
)
MISROUTED = Counter(
    "headrace_learner_misrouted_total",
    "Events on another partition than Kafka's default (murmur2) partitioner gives their user_id",
    ["shard"],
)
LEARNED = Counter("headrace_learner_examples_total", "Examples learned", ["shard"])
JOINS = Gauge("headrace_learner_joins", "Label-join outcomes so far, by kind", ["shard", "kind"])
LAG = Gauge(
    "headrace_learner_lag", "Records behind the end of each partition", ["shard", "partition"]
)
PUBLISH_SECONDS = Histogram(
    "headrace_learner_publish_seconds",
    "Time of one atomic state publish",
    ["shard"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
VERSION = Gauge("headrace_learner_model_version", "Last published state version", ["shard"])
EPOCH = Gauge(
    "headrace_learner_model_epoch", "Epoch of the last published state version", ["shard"]
)
LAST_PUBLISH = Gauge(
    "headrace_learner_last_publish_timestamp", "Unix time of the last publish", ["shard"]
)
ACTIVE = Gauge("headrace_learner_active", "1 while this process owns the shard", ["shard"])
PROGRESSIVE = Gauge(
    "headrace_learner_progressive_metric",
    "Progressive validation metrics per variant",
    ["shard", "variant", "metric"],
)
QUARANTINED = Counter(
    "headrace_learner_quarantined_total",
    "Events the fraud guard blocked, by rule",
    ["shard", "rule"],
)
ALERTS = Counter(
    "headrace_learner_alerts_total",
    "Drift and rollback alerts raised",
    ["shard", "variant", "detector"],
)
ROLLBACKS = Counter(
    "headrace_learner_rollbacks_total", "Rollbacks to last known good", ["shard", "variant"]
)


def set_progressive(shard: str, variant: str, report: Mapping[str, float | int | None]) -> None:
    """One variant's progressive metrics as gauges. An undefined value (None: an AUC of one
    class) removes its series rather than leave the last defined value standing as current."""
    for metric, value in report.items():
        if value is None:
            PROGRESSIVE.remove(shard, variant, metric)
        else:
            PROGRESSIVE.labels(shard, variant, metric).set(value)
