"""The learner on the real Kafka and Redis: bad input, clean shutdown, River parity."""

import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from river import datasets, evaluate, metrics

from headrace.sim.simulator import SimRecord, SimulatorConfig, generate
from learner.models import build_model
from stream.events import Labeled, dump_event
from stream.settings import StreamSettings
from stream.topics import ensure_topics
from tests.learner.harness import (
    LearnerProcess,
    caught_up,
    end_offsets,
    learner_env,
    read_all,
    send,
    store,
    wait_until,
)
from tests.learner.test_metrics import brute_roc_auc
from tests.learner.test_variant import rivers_scores
from tests.support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_malformed_records_land_in_the_dead_letter_topic_and_nothing_else_is_lost(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(SimulatorConfig(seed=4, count=10_000, malformed_rate=0.01)))
    malformed = [r for r in records if r.type == "malformed"]
    assert 50 < len(malformed) < 150
    send(topics, records)
    ends = end_offsets(topics)
    proc = LearnerProcess(learner_env(topics), tmp_path / "learner.log")
    try:
        wait_until(lambda: caught_up(redis_client, topics, ends), 90, "the learner")
    finally:
        assert proc.stop() == 0
    assert group_offsets(topics, learner_env(topics)["HEADRACE_GROUP_ID"]) == ends

    dead = read_all(topics, topics.topic_dlq)
    assert sorted(r.value for r in dead) == sorted(r.value for r in malformed)
    for record in dead:
        headers = dict(record.headers)
        assert headers["reason"] in {b"invalid_json", b"schema", b"unknown_type", b"too_large"}
        assert headers["detail"]
        assert headers["source_topic"] == topics.topic_events.encode()
        assert int(headers["source_offset"]) >= 0

    meta = store(redis_client, topics).load_meta()
    assert meta is not None
    counts = meta["counts"]
    assert sum(v for k, v in counts.items() if k.startswith("rejected_")) == len(malformed)
    for kind in ("impression", "click", "add_to_cart", "purchase"):
        assert counts.get(f"event_{kind}", 0) == sum(1 for r in records if r.type == kind)


def test_sigterm_publishes_the_last_state_and_releases_the_lease(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(SimulatorConfig(seed=5, count=3_000)))
    send(topics, records)
    ends = end_offsets(topics)
    port = free_port()
    # A publish cadence the test never reaches: only the shutdown can publish.
    env = learner_env(
        topics, publish_every_events=1_000_000, publish_every_ms=3_600_000, metrics_port=port
    )
    proc = LearnerProcess(env, tmp_path / "learner.log")
    wait_until(
        lambda: consumed(port) >= len(records), 60, "the learner to consume the whole stream"
    )
    assert store(redis_client, topics).version() == 0
    assert proc.stop() == 0
    assert caught_up(redis_client, topics, ends)
    assert store(redis_client, topics).version() == 1
    assert redis_client.get(f"{topics.key_prefix}:shard:main:lease") is None
    # Standard lag tools read the group's offsets: the clean stop committed them all.
    assert group_offsets(topics, env["HEADRACE_GROUP_ID"]) == ends


def group_offsets(settings: StreamSettings, group_id: str) -> dict[int, int | None]:
    """What the consumer group `group_id` has committed, per partition of the events topic."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group_id)
    try:
        return {
            p: consumer.committed(TopicPartition(settings.topic_events, p))
            for p in range(settings.partitions)
        }
    finally:
        consumer.close()


def consumed(port: int) -> float:
    """Records the learner has consumed, from its own Prometheus endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name in ("headrace_learner_events", "headrace_learner_rejected"):
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def test_learning_labeled_events_matches_rivers_progressive_validation(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    one = topics.model_copy(update={"partitions": 1, "topic_events": topics.topic_events + ".one"})
    ensure_topics(one)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    examples = list(datasets.Phishing())
    records = [
        SimRecord(
            key=b"partner",
            value=dump_event(
                Labeled(
                    event_id=f"ph-{n}",
                    ts=start + timedelta(seconds=n),
                    user_id="partner",
                    features={k: float(v) for k, v in x.items()},
                    label=bool(y),
                )
            ),
            type="labeled",
            ts_ms=0,
        )
        for n, (x, y) in enumerate(examples)
    ]
    send(one, records)
    ends = end_offsets(one)
    window = 500
    # River's evaluator scores the latest weights: so does the learner without the average.
    proc = LearnerProcess(
        learner_env(one, metrics_window=window, served_average=0), tmp_path / "learner.log"
    )
    try:
        wait_until(lambda: caught_up(redis_client, one, ends), 90, "the learner")
    finally:
        assert proc.stop() == 0
    meta = store(redis_client, one).load_meta()
    assert meta is not None
    got = meta["variants"]["main"]["metrics"]

    pairs = [({k: float(v) for k, v in x.items()}, bool(y)) for x, y in examples]
    expected = {}
    for name, metric in (("log_loss", metrics.LogLoss()), ("accuracy", metrics.Accuracy())):
        result = evaluate.progressive_val_score(pairs, build_model("logreg"), metric)
        expected[name] = result.get()
    assert meta["variants"]["main"]["n_learned"] == len(examples)
    for name, value in expected.items():
        assert got[name] == value, name
    # The ranking of the same predictions: exact over the window, bounded since the start.
    scored = rivers_scores(pairs, build_model("logreg"))
    assert got["rolling_roc_auc"] == pytest.approx(brute_roc_auc(scored[-window:]), abs=1e-12)
    exact = brute_roc_auc(scored)
    assert exact is not None
    assert abs(got["roc_auc"] - exact) <= got["roc_auc_error"] <= 0.005
