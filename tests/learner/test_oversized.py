"""No record the broker accepts stops a shard (issue 17), through real learner processes.

Records at and just over every size limit on the learner's path: the events parser's
(65,536 bytes), the dead-letter topic's max.message.bytes (set to 300,000 here), the
broker's message.max.bytes (1,048,588), a huge key, huge and many headers. The first
learner consumes them and is killed with -9 before it ever publishes, so its successor
must read every one of them again (where the learner of the issue crashed, every time).
"""

import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Message
from kafka.errors import MessageSizeTooLargeError
from kafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client.parser import text_string_to_metric_families

from headrace.sim.simulator import SimulatorConfig, generate
from stream.dlq import rejection_headers
from stream.events import MAX_EVENT_BYTES, Labeled, Rejection, dump_event, parse_event
from stream.limits import KAFKA_DEFAULT_MAX_BYTES
from stream.producer import make_producer
from stream.settings import StreamSettings
from stream.sizes import BATCH_OVERHEAD, batch_size
from tests.learner.harness import (
    LearnerProcess,
    caught_up,
    committed_offsets,
    end_offsets,
    learner_env,
    predictions,
    probe_rows,
    send,
    store,
    wait_until,
)
from tests.learner.test_exactly_once import reference_run
from tests.support import create_topic, free_port, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = SimulatorConfig(seed=17, count=3_000, n_users=200, n_items=80)
DLQ_LIMIT = 300_000
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Big:
    """One record of the oversized part of the stream, and what must become of it."""

    name: str
    key: bytes
    value: bytes
    headers: Headers = field(default_factory=list)
    fate: str = "dlq"
    """learned, dlq (whole), dlq_cut, quarantine_cut"""


def events_batch(key: bytes, value: bytes, headers: Headers) -> int:
    """The batch kafka-python sends for this record alone: what the broker checks."""
    record: int = DefaultRecordBatchBuilder.size_in_bytes(0, 0, key, value, headers)
    return BATCH_OVERHEAD + record


def sized(size: int, measure: Any) -> bytes:
    """The run of b"x" whose measure(value) is `size`."""
    for n in range(size, 0, -1):
        if measure(b"x" * n) == size:
            return b"x" * n
    raise AssertionError(f"no value measures {size}")


def labeled(n: int, ts: datetime, price: float = 5.0) -> bytes:
    event = Labeled(
        event_id=f"big-{n}",
        ts=ts,
        user_id=f"big-user-{n}",
        features={"price": price, "category": "merino"},
        label=bool(n % 2),
    )
    return dump_event(event)


def padded(event: bytes, size: int) -> bytes:
    """The same JSON event, `size` bytes long (blanks before its closing brace)."""
    return event[:-1] + b" " * (size - len(event)) + b"}"


def dlq_copy_size(settings: StreamSettings, offset: int, key: bytes, value: bytes) -> int:
    """The batch the learner's copy of this rejected record makes on the dead-letter topic."""
    rejection = parse_event(value)
    assert isinstance(rejection, Rejection)
    source = Message(topic=settings.topic_events, partition=0, offset=offset)
    headers = [*rejection_headers(source, rejection), ("original_size", str(len(value)).encode())]
    return batch_size(key, value, headers)


def oversized(settings: StreamSettings, first_offset: int, ts: datetime) -> list[Big]:
    """The oversized records, in the order they are sent from `first_offset` on."""
    bigs: list[Big] = []
    at_parser = padded(labeled(0, ts), MAX_EVENT_BYTES)
    bigs.append(Big("at the parser's limit", b"u0", at_parser, fate="learned"))
    bigs.append(Big("over the parser's limit", b"u1", padded(labeled(1, ts), MAX_EVENT_BYTES + 1)))
    for name, size, fate in (
        ("at the dead-letter topic's limit", DLQ_LIMIT, "dlq"),
        ("over the dead-letter topic's limit", DLQ_LIMIT + 1, "dlq_cut"),
    ):
        offset = first_offset + len(bigs)
        value = sized(size, lambda v, o=offset: dlq_copy_size(settings, o, b"u2", v))
        bigs.append(Big(name, b"u2", value, fate=fate))
    bigs.append(Big("the issue's 1,000,000 bytes", b"u3", b"x" * 1_000_000, fate="dlq_cut"))
    at_broker = sized(KAFKA_DEFAULT_MAX_BYTES, lambda v: events_batch(b"u4", v, []))
    bigs.append(Big("at the broker's limit", b"u4", at_broker, fate="dlq_cut"))
    bigs.append(Big("a huge key on a bad record", b"k" * 1_000_000, b"{not json", fate="dlq_cut"))
    bigs.append(Big("a huge key on an event", b"k" * 500_000, labeled(7, ts), fate="learned"))
    huge_header = [("trace", b"h" * 1_000_000)]
    bigs.append(Big("a huge header", b"u8", labeled(8, ts), huge_header, fate="learned"))
    many = [(f"h{i}", b"v") for i in range(20_000)]
    bigs.append(Big("twenty thousand headers", b"u9", labeled(9, ts), many, fate="learned"))
    bigs.append(Big("a bad record with a huge header", b"u10", b"[]", huge_header))
    # An event the fraud guard blocks (price <= 0), its key as large as the broker takes.
    blocked = labeled(11, ts, price=-5.0)
    key = sized(KAFKA_DEFAULT_MAX_BYTES, lambda k: events_batch(k, blocked, []))
    bigs.append(Big("a blocked event at the broker's limit", key, blocked, fate="quarantine_cut"))
    return bigs


def publish_one_by_one(settings: StreamSettings, bigs: list[Big]) -> None:
    # Uncompressed and one batch each, so each record's batch is exactly as measured.
    producer = make_producer(settings, compression_type=None, max_request_size=4_000_000)
    try:
        for big in bigs:
            producer.send(
                settings.topic_events, value=big.value, key=big.key, headers=big.headers
            ).get(timeout=30)
    finally:
        producer.close(timeout=10)


def refused_by_the_broker(settings: StreamSettings) -> None:
    over = sized(KAFKA_DEFAULT_MAX_BYTES + 1, lambda v: events_batch(b"u", v, []))
    producer = make_producer(settings, compression_type=None, max_request_size=4_000_000)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            producer.send(settings.topic_events, value=over, key=b"u").get(timeout=30)
    finally:
        producer.close(timeout=10)


def everything(settings: StreamSettings, topic: str) -> list[Any]:
    """Every record on `topic` now."""
    return read_topic(settings, topic, fetch_max_bytes=8 << 20)


def metrics(port: int, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        tuple(sorted((k, str(v)) for k, v in sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def consumed(port: int) -> float:
    try:
        seen = metrics(port, "headrace_learner_events") | metrics(port, "headrace_learner_rejected")
    except OSError:
        return 0.0
    return sum(seen.values())


@pytest.fixture
def topics(settings: StreamSettings) -> StreamSettings:
    """One-partition topics (known offsets); the dead-letter topic takes 300,000 bytes."""
    create_topic(settings, settings.topic_events)
    create_topic(settings, settings.topic_dlq, {"max.message.bytes": str(DLQ_LIMIT)})
    create_topic(settings, settings.topic_quarantine)
    return settings.model_copy(update={"partitions": 1})


def test_no_record_the_broker_accepts_stops_the_shard(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(CONFIG))
    before, after = records[:1_500], records[1_500:]
    send(topics, before)
    ts = datetime.fromtimestamp(before[-1].ts_ms / 1000, UTC)
    bigs = oversized(topics, len(before), ts)
    publish_one_by_one(topics, bigs)
    refused_by_the_broker(topics)
    first_big = len(before)

    port = free_port()
    never_publishes = learner_env(
        topics, publish_every_events=1_000_000, publish_every_ms=3_600_000, metrics_port=port
    )
    first = LearnerProcess(never_publishes, tmp_path / "learner.log")
    try:
        wait_until(
            lambda: consumed(port) >= len(before) + len(bigs),
            90,
            "the first learner to get past the oversized records",
        )
    finally:
        first.kill()
    assert store(redis_client, topics).version() == 0  # so its successor reads them all again

    send(topics, after)
    ends = end_offsets(topics)
    port = free_port()
    second = LearnerProcess(learner_env(topics, metrics_port=port), tmp_path / "learner.log")
    try:
        wait_until(lambda: caught_up(redis_client, topics, ends), 120, "the restarted learner")
        cut = metrics(port, "headrace_learner_side_truncated")
        refused = metrics(port, "headrace_learner_side_errors")
    finally:
        assert second.stop() == 0
    dlq, quarantine = topics.topic_dlq, topics.topic_quarantine
    cuts = sum(big.fate == "dlq_cut" for big in bigs)
    assert cut == {
        (("shard", "main"), ("topic", dlq)): cuts,
        (("shard", "main"), ("topic", quarantine)): 1,
    }
    assert refused == {}

    dead = copies(everything(topics, dlq))
    blocked = copies(everything(topics, quarantine))
    for offset, big in enumerate(bigs, start=first_big):
        if big.fate == "learned":
            assert offset not in dead and offset not in blocked, big.name
            continue
        [copy] = (dead if big.fate.startswith("dlq") else blocked)[offset]
        check_copy(big, copy)
    assert len(dead) == sum(big.fate.startswith("dlq") for big in bigs)
    assert set(blocked) == {first_big + len(bigs) - 1}

    # Nothing lost, nothing learned twice: the same state as a learner that never crashed.
    reference = reference_run(topics, redis_client)
    got, want = meta(redis_client, topics), meta(redis_client, reference)
    for part in ("offsets", "counts", "joins"):
        assert got[part] == want[part], part
    for name, variant in want["variants"].items():
        assert got["variants"][name]["n_learned"] == variant["n_learned"] > 0
        assert got["variants"][name]["metrics"] == variant["metrics"]
    probe = probe_rows(CONFIG)
    assert predictions(redis_client, topics, probe) == predictions(redis_client, reference, probe)

    counts, joins = got["counts"], got["joins"]
    assert committed_offsets(redis_client, topics) == ends
    rejected = sum(v for k, v in counts.items() if k.startswith("rejected_"))
    assert rejected == sum(big.fate.startswith("dlq") for big in bigs)
    # Every labeled event the guard let through was learned, huge key and headers or not.
    from_joins = joins.get("positive", 0) + joins.get("negative_window", 0)
    from_joins += joins.get("negative_evicted", 0)
    assert counts["learned"] == from_joins + sum(big.fate == "learned" for big in bigs)


def meta(client: redis.Redis, settings: StreamSettings) -> dict[str, Any]:
    found = store(client, settings).load_meta()
    assert found is not None
    return found


def copies(records: list[Any]) -> dict[int, list[Any]]:
    """Side records by the offset of their original; a replay's copies must be identical."""
    found: dict[int, list[Any]] = {}
    for record in records:
        offset = int(dict(record.headers)["source_offset"])
        same = found.setdefault(offset, [])
        this = (record.key, record.value, record.headers)
        if not any((r.key, r.value, r.headers) == this for r in same):
            same.append(record)
    return found


def check_copy(big: Big, copy: Any) -> None:
    headers = dict(copy.headers)
    assert headers["original_size"] == str(len(big.value)).encode(), big.name
    assert "side_error" not in headers, big.name
    limit = DLQ_LIMIT if big.fate.startswith("dlq") else KAFKA_DEFAULT_MAX_BYTES
    assert batch_size(copy.key, copy.value, copy.headers) <= limit, big.name
    if big.fate == "dlq":
        assert (copy.key, copy.value) == (big.key, big.value), big.name
        assert "truncated" not in headers, big.name
        assert headers["reason"] in (b"too_large", b"schema", b"unknown_type"), big.name
        return
    assert big.key.startswith(copy.key) and big.value.startswith(copy.value), big.name
    if len(big.key) > 1024:  # the key was the oversized part: the value is whole
        assert headers["truncated"] == b"key", big.name
        assert headers["original_key_size"] == str(len(big.key)).encode(), big.name
        assert copy.value == big.value, big.name
    else:
        assert headers["truncated"] == b"value", big.name
        assert copy.key == big.key, big.name
    # Cut no more than needed: within a few bytes of the topic's limit.
    assert batch_size(copy.key, copy.value, copy.headers) >= limit - 8, big.name


def test_a_side_topic_that_takes_nothing_holds_the_offsets_not_the_process(
    one_partition: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(SimulatorConfig(seed=18, count=1_000)))
    send(one_partition, records[:500])
    publish_one_by_one(one_partition, [Big("not JSON", b"u", b"{")])
    send(one_partition, records[500:])
    ends = end_offsets(one_partition)
    port = free_port()
    # A name the broker refuses outright: every dead letter fails (TOPIC_EXCEPTION).
    env = learner_env(one_partition, topic_dlq="not a topic!", metrics_port=port)
    broken = LearnerProcess(env, tmp_path / "learner.log")
    try:
        wait_until(
            lambda: sum(errors(port).values()) >= 2, 60, "the learner to try the dead letter twice"
        )
        assert broken.proc.poll() is None  # still running: it starts over, it does not exit
        assert committed_offsets(redis_client, one_partition).get(0, 0) <= 500
    finally:
        assert broken.stop() == 0
    assert committed_offsets(redis_client, one_partition).get(0, 0) <= 500

    fixed = LearnerProcess(learner_env(one_partition), tmp_path / "learner.log")
    try:
        wait_until(lambda: caught_up(redis_client, one_partition, ends), 60, "the fixed learner")
    finally:
        assert fixed.stop() == 0
    dead = copies(everything(one_partition, one_partition.topic_dlq))
    assert [r.value for r in dead[500]] == [b"{"]
    counts = meta(redis_client, one_partition)["counts"]
    assert sum(v for k, v in counts.items() if k.startswith("event_")) == len(records)


def errors(port: int) -> dict[tuple[tuple[str, str], ...], float]:
    try:
        return metrics(port, "headrace_learner_side_errors")
    except OSError:
        return {}
