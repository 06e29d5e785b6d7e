"""The simulated clickstream: deterministic, well-formed, realistic; and publishing it to Kafka."""

import itertools
import json
import random
import sys
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from kafka.future import Future

from headrace.sim.malformed import KINDS, malformed
from headrace.sim.publish import REPORT_TYPES, SimReport, publish, simulate
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate, world
from headrace.sim.store_world import CATEGORIES
from stream.errors import PublishError
from stream.events import (
    AddToCart,
    Click,
    Context,
    Impression,
    Labeled,
    Purchase,
    Rejection,
    parse_event,
)
from stream.producer import make_producer
from stream.settings import StreamSettings
from tests.support import headrace, read_topic, stack_env

Parsed = Impression | Click | AddToCart | Purchase | Labeled
N = 30_000
DRIFT_AT = 12_000
ATTACK_AT = 20_000
FULL = SimulatorConfig(
    seed=11,
    count=N,
    drift_at=DRIFT_AT,
    attack_at=ATTACK_AT,
    malformed_rate=0.03,
    labeled_rate=0.05,
)


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    return list(generate(FULL))


@pytest.fixture(scope="module")
def parsed(records: list[SimRecord]) -> list[Parsed | Rejection]:
    return [parse_event(r.value) for r in records]


def events_of(records: list[SimRecord], parsed: list[Parsed | Rejection]) -> list[Parsed]:
    return [e for e in parsed if not isinstance(e, Rejection)]


# --- determinism -----------------------------------------------------------------


def test_same_seed_same_bytes(records: list[SimRecord]) -> None:
    again = list(generate(FULL))
    assert again == records


def test_different_seed_different_records(records: list[SimRecord]) -> None:
    other = list(generate(FULL.model_copy(update={"seed": 12, "count": 2_000})))
    assert [r.value for r in other] != [r.value for r in records[:2_000]]
    clean = {r.value for r in other if r.type != "malformed"}
    assert not clean & {r.value for r in records[:2_000]}


def test_count_is_exact_and_none_is_endless() -> None:
    assert len(list(generate(SimulatorConfig(count=777)))) == 777
    assert list(generate(SimulatorConfig(count=0))) == []
    endless = generate(SimulatorConfig(seed=3))
    assert len(list(itertools.islice(endless, 5_000))) == 5_000


def test_malformed_records_do_not_change_the_clean_stream() -> None:
    clean = list(generate(SimulatorConfig(seed=5, count=5_000)))
    noisy = [
        r
        for r in generate(SimulatorConfig(seed=5, count=6_000, malformed_rate=0.1))
        if r.type != "malformed"
    ]
    assert noisy[: len(clean) - 500] == clean[: len(clean) - 500]


# --- well-formed ------------------------------------------------------------------


def test_every_well_formed_record_parses(
    records: list[SimRecord], parsed: list[Parsed | Rejection]
) -> None:
    for record, event in zip(records, parsed, strict=True):
        if record.type == "malformed":
            continue
        assert not isinstance(event, Rejection), (event, record.value)
        assert event.type == record.type
        assert record.key == event.user_id.encode()
        assert record.ts_ms == int(event.ts.timestamp() * 1000)


def test_malformed_share_and_nothing_else_rejects(
    records: list[SimRecord], parsed: list[Parsed | Rejection]
) -> None:
    kinds = Counter(r.type for r in records)
    # Binomial(30k, 0.03): sd ~ 30 records; 5 sd of tolerance.
    assert abs(kinds["malformed"] / N - FULL.malformed_rate) < 0.005
    rejected = [r.type for r, e in zip(records, parsed, strict=True) if isinstance(e, Rejection)]
    assert rejected == ["malformed"] * kinds["malformed"]
    reasons = Counter(e.reason for e in parsed if isinstance(e, Rejection))
    assert {"invalid_json", "schema", "unknown_type"} <= set(reasons)


def test_no_malformed_records_by_default() -> None:
    assert all(r.type != "malformed" for r in generate(SimulatorConfig(count=3_000)))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_malformed_kind_is_rejected(kind: str) -> None:
    rng = random.Random(kind)
    reasons = set()
    for _ in range(30):
        template: dict[str, Any] = {
            "event_id": "e1",
            "type": "impression",
            "ts": "2026-01-01T00:00:00Z",
            "user_id": "u1",
            "impression_id": "m1",
            "item_id": "i1",
            "context": {"query": "merino dk", "device": "mobile", "page": "search", "position": 0},
            "item": {"price": 9.5, "category": "merino", "brand": "Drops"},
        }
        result = parse_event(malformed(rng, template, kind))
        assert isinstance(result, Rejection), kind
        reasons.add(result.reason)
    expected = {
        "too_large": {"too_large"},
        "truncated": {"invalid_json"},
        "unknown_type": {"unknown_type"},
    }
    if kind in expected:
        assert reasons == expected[kind]


def test_ids_are_unique(parsed: list[Parsed | Rejection]) -> None:
    event_ids = [e.event_id for e in parsed if not isinstance(e, Rejection)]
    assert len(event_ids) == len(set(event_ids))
    impression_ids = [e.impression_id for e in parsed if isinstance(e, Impression)]
    assert len(impression_ids) == len(set(impression_ids))


def test_event_time_never_goes_back(records: list[SimRecord]) -> None:
    times = [r.ts_ms for r in records]
    assert times == sorted(times)
    start = int(FULL.start.timestamp() * 1000)
    assert times[0] >= start


def test_outcomes_follow_their_impression(parsed: list[Parsed | Rejection]) -> None:
    shown: dict[str, Impression] = {}
    steps: dict[str, list[str]] = defaultdict(list)
    linked = 0
    for event in parsed:
        if isinstance(event, Impression):
            shown[event.impression_id] = event
        elif isinstance(event, Click | AddToCart | Purchase) and event.impression_id:
            impression = shown[event.impression_id]  # earlier in the stream
            assert impression.ts < event.ts
            assert impression.user_id == event.user_id
            assert impression.item_id == event.item_id
            steps[event.impression_id].append(event.type)
            linked += 1
    assert linked > 1_000
    # The funnel is ordered: a purchase follows a cart, which follows a click.
    for sequence in steps.values():
        assert sequence == ["click", "add_to_cart", "purchase"][: len(sequence)]


def test_outcomes_come_seconds_to_minutes_later(parsed: list[Parsed | Rejection]) -> None:
    shown = {e.impression_id: e.ts for e in parsed if isinstance(e, Impression)}
    delays = [
        (e.ts - shown[e.impression_id]).total_seconds()
        for e in parsed
        if isinstance(e, Purchase) and e.impression_id
    ]
    human = [d for d in delays if d > 1]
    assert 30 < float(np.median(human)) < 600
    assert max(delays) < 1_800  # inside the learner's default attribution window


def human_impressions(records: list[SimRecord]) -> list[SimRecord]:
    return [r for r in records if r.type == "impression" and not r.is_attack]


def test_purchase_rate_is_realistic(records: list[SimRecord]) -> None:
    shown = human_impressions(records)
    bought = sum(bool(r.will_purchase) for r in shown) / len(shown)
    assert 0.03 <= bought <= 0.08
    mean_p = float(np.mean([r.p_purchase for r in shown]))
    assert abs(mean_p - bought) < 0.01  # the probabilities are calibrated


def test_purchase_events_match_the_ground_truth() -> None:
    records = list(generate(SimulatorConfig(seed=2, count=30_000)))
    events = [parse_event(r.value) for r in records]
    bought = {e.impression_id for e in events if isinstance(e, Purchase) and e.impression_id}
    # Purchases due after the last record are cut off: judge impressions 20 minutes older.
    horizon = records[-1].ts_ms - 20 * 60 * 1000
    judged = 0
    for record, event in zip(records, events, strict=True):
        if isinstance(event, Impression) and record.ts_ms < horizon:
            assert (event.impression_id in bought) == record.will_purchase
            judged += 1
    assert judged > 10_000


def auc(scores: list[float], labels: list[bool]) -> float:
    ranks = np.argsort(np.argsort(scores)) + 1
    positives = np.asarray(labels)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_the_hidden_model_carries_learnable_signal(records: list[SimRecord]) -> None:
    shown = human_impressions(records)
    score = auc([r.p_purchase or 0.0 for r in shown], [bool(r.will_purchase) for r in shown])
    assert score > 0.75
    by_position: dict[int, list[bool]] = defaultdict(list)
    for record in shown:
        event = parse_event(record.value)
        assert isinstance(event, Impression)
        by_position[event.context.position].append(bool(record.will_purchase))
    assert np.mean(by_position[0]) > np.mean(by_position[9])


def category_rates(records: list[SimRecord]) -> dict[str, float]:
    rates: dict[str, list[float]] = defaultdict(list)
    for record in records:
        event = parse_event(record.value)
        assert isinstance(event, Impression)
        rates[event.item.category].append(record.p_purchase or 0.0)
    return {category: float(np.mean(values)) for category, values in rates.items()}


def test_drift_changes_the_hidden_model() -> None:
    config = SimulatorConfig(seed=4, count=60_000, drift_at=30_000)
    records = list(generate(config))
    before = category_rates(human_impressions(records[:30_000]))
    after = category_rates(human_impressions(records[32_000:]))
    vector_before = np.array([before[c] for c in CATEGORIES])
    vector_after = np.array([after[c] for c in CATEGORIES])
    # Which categories sell is reshuffled, not just scaled.
    assert np.corrcoef(vector_before, vector_after)[0, 1] < 0.5
    assert np.abs(vector_before - vector_after).max() > 0.03
    store = world(config)
    items = np.arange(config.n_items)
    flat = np.zeros(config.n_items)
    old = np.concatenate([store.logits(u, items, flat, -1, 0, False) for u in range(200)])
    new = np.concatenate([store.logits(u, items, flat, -1, 0, True) for u in range(200)])
    assert np.corrcoef(old, new)[0, 1] < 0.5
    assert store.price[0] != store.price[1]


def test_no_drift_keeps_the_model() -> None:
    records = list(generate(SimulatorConfig(seed=4, count=60_000)))
    before = category_rates(human_impressions(records[:30_000]))
    after = category_rates(human_impressions(records[32_000:]))
    assert np.corrcoef(list(before.values()), [after[c] for c in before])[0, 1] > 0.8


def test_attack_starts_at_attack_at_and_comes_from_bots(records: list[SimRecord]) -> None:
    bots = {u.encode() for u in world(FULL).bot_ids}
    assert len(bots) == FULL.attack_users
    assert not any(r.is_attack for r in records[:ATTACK_AT])
    attack = [r for r in records if r.is_attack]
    assert len(attack) > 500
    assert all(r.key in bots for r in attack)
    assert not any(r.key in bots for r in records if not r.is_attack)


def test_bots_flood_and_flip_labels(records: list[SimRecord]) -> None:
    attack = [(r, parse_event(r.value)) for r in records if r.is_attack]
    storms: dict[tuple[bytes, int], int] = Counter()
    for record, event in attack:
        if isinstance(event, Purchase) and event.impression_id is None:
            storms[(record.key, record.ts_ms // 1000)] += 1
    assert max(storms.values()) >= 5  # many purchases within one second, no impression
    bought = [r.p_purchase or 0.0 for r, _ in attack if r.type == "impression" and r.will_purchase]
    passed = [
        r.p_purchase or 0.0 for r, _ in attack if r.type == "impression" and not r.will_purchase
    ]
    # They buy what the hidden model says they would not, and pass on what it says they would.
    assert np.mean(bought) < 0.5 * np.mean(passed)
    shown = {e.impression_id: e.ts for _, e in attack if isinstance(e, Impression)}
    fast = [
        (e.ts - shown[e.impression_id]).total_seconds()
        for _, e in attack
        if isinstance(e, Purchase) and e.impression_id
    ]
    assert fast
    assert max(fast) < 1.0


def test_labeled_examples(records: list[SimRecord], parsed: list[Parsed | Rejection]) -> None:
    labeled = [(r, e) for r, e in zip(records, parsed, strict=True) if isinstance(e, Labeled)]
    assert labeled
    for record, event in labeled:
        assert record.will_purchase == event.label
        assert {"price", "category", "query", "position"} <= set(event.features)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="start"):
        SimulatorConfig(start=datetime(2026, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="malformed_rate"):
        SimulatorConfig(malformed_rate=1.5)
    with pytest.raises(ValueError, match="bogus"):
        SimulatorConfig(bogus=1)  # type: ignore[call-arg]


# --- the world, for /predict requests --------------------------------------------


def test_request_for_builds_a_realistic_request() -> None:
    store = world(SimulatorConfig(seed=8))
    request = store.request_for("u00042", np.random.default_rng(1), k=50)
    assert request.user_id == "u00042"
    assert isinstance(request.context, Context)
    assert len(request.candidates) == 50
    assert len({c.item_id for c in request.candidates}) == 50
    assert all(0 < c.p_purchase < 1 for c in request.candidates)
    assert {c.item.category for c in request.candidates} <= set(CATEGORIES)
    again = store.request_for(42, np.random.default_rng(1), k=50)
    assert again == request
    drifted = store.request_for(42, np.random.default_rng(1), k=50, drifted=True)
    assert drifted != request


def test_the_world_is_the_simulated_one() -> None:
    config = SimulatorConfig(seed=9, count=2_000)
    store = world(config)
    for record in generate(config):
        event = parse_event(record.value)
        if isinstance(event, Impression):
            index = store.item_ids.index(event.item_id)
            assert event.item.price == store.price[0][index]
            assert event.item.brand == store.item_brand[index]


# --- publishing, against a stand-in producer ------------------------------------


class FakeProducer:
    """Records what publish() sends; fails the sends whose value is in `fail`."""

    def __init__(self, fail: frozenset[bytes] = frozenset()) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = fail
        self.flushed = False

    def send(self, topic: str, value: bytes, key: bytes) -> Future:
        self.sent.append((topic, key, value))
        future = Future()
        if value in self.fail:
            return future.failure(RuntimeError("broker said no"))
        return future.success(None)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True


def test_publish_sends_keyed_records_and_counts_them() -> None:
    batch = list(generate(FULL.model_copy(update={"count": 3_000, "attack_at": 0})))
    producer = FakeProducer()
    report = publish(producer, "t.events", batch)
    assert producer.flushed
    assert producer.sent == [("t.events", r.key, r.value) for r in batch]
    assert report.total == len(batch)
    expected = Counter(r.type for r in batch)
    for kind, n in expected.items():
        assert report.counts[kind] == n
    assert report.counts["attack"] == sum(r.is_attack for r in batch) > 0
    assert f"{len(batch):,}" in str(report)
    assert "\n" not in str(report)


def test_publish_raises_when_a_send_fails() -> None:
    batch = list(generate(SimulatorConfig(seed=1, count=500)))
    producer = FakeProducer(fail=frozenset({batch[100].value}))
    with pytest.raises(PublishError, match="broker said no"):
        publish(producer, "t.events", batch)
    # It stops at once instead of sending the rest into a failing broker.
    assert len(producer.sent) == 101


class FakeClock:
    """Time that passes only when slept (or stalled): pacing without the wall clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """publish()'s clock, faked: it reads and sleeps through its own module's `time`."""
    fake = FakeClock()
    monkeypatch.setattr(sys.modules[publish.__module__], "time", fake)
    return fake


class ClockedProducer(FakeProducer):
    """Notes when each record was sent; the send numbered in `stalls` takes that long."""

    def __init__(self, clock: FakeClock, stalls: dict[int, float] | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.stalls = stalls or {}
        self.times: list[float] = []

    def send(self, topic: str, value: bytes, key: bytes) -> Future:
        self.clock.now += self.stalls.get(len(self.times), 0.0)
        self.times.append(self.clock.now)
        return super().send(topic, value, key)


def test_publish_keeps_the_rate(clock: FakeClock) -> None:
    batch = list(generate(SimulatorConfig(seed=1, count=300)))
    producer = ClockedProducer(clock)
    report = publish(producer, "t.events", batch, rate=1_000)
    # 300 records at 1,000/s: one every millisecond from the first, not a burst.
    assert producer.times == pytest.approx([i / 1_000 for i in range(300)], abs=1e-9)
    assert report.elapsed_s == pytest.approx(0.299)
    assert report.rate == pytest.approx(300 / 0.299)


def test_publish_makes_up_a_short_stall_and_never_runs_ahead(clock: FakeClock) -> None:
    batch = list(generate(SimulatorConfig(seed=1, count=300)))
    # The 100th send takes 50 ms (a pause of the process, a slow broker).
    producer = ClockedProducer(clock, stalls={100: 0.05})
    report = publish(producer, "t.events", batch, rate=1_000)
    # The 50 records the stall held up go at once; then the pace is 1/ms again.
    assert producer.times[100:151] == pytest.approx([0.15] * 51)
    assert producer.times[151] == pytest.approx(0.151)
    # At no point more records than 1,000/s allows since the start; the total is on time.
    assert all(t >= i / 1_000 - 1e-9 for i, t in enumerate(producer.times))
    assert report.elapsed_s == pytest.approx(0.299)


def test_publish_stops_after_duration(clock: FakeClock) -> None:
    producer = ClockedProducer(clock)
    endless = itertools.islice(generate(SimulatorConfig(seed=1)), 10_000)
    report = publish(producer, "t.events", endless, rate=500, duration=0.3)
    # 0.3 s at 500/s, give or take the one record whose wait began before the end.
    assert abs(report.total - 150) <= 1
    assert len(producer.sent) == report.total
    assert producer.times[-1] <= 0.3 + 1 / 500 + 1e-9


def test_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    batch = list(generate(SimulatorConfig(seed=1, count=600)))
    publish(FakeProducer(), "t.events", batch, progress=True, total=len(batch))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "600/600" in captured.err
    publish(FakeProducer(), "t.events", batch, progress=False, total=len(batch))
    assert capsys.readouterr().err == ""


def test_no_broker_is_a_publish_error() -> None:
    nobody = StreamSettings(kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(PublishError, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        make_producer(nobody, bootstrap_timeout_ms=300)


def test_report_summary_is_one_line() -> None:
    report = SimReport(Counter({"impression": 90, "purchase": 10, "attack": 3}), 2.0)
    assert report.total == 100
    assert report.rate == 50.0
    assert str(report).startswith("published 100 records in 2.0 s (50/s)")
    assert report.as_dict()["attack"] == 3


# --- against the real broker ------------------------------------------------------


def read_back(settings: StreamSettings) -> list[Any]:
    """Everything on the events topic: after a flushed publish, all there will be."""
    return read_topic(settings, settings.topic_events)


@pytest.mark.integration
def test_simulate_publishes_every_record_to_kafka(topics: StreamSettings) -> None:
    config = SimulatorConfig(seed=21, count=5_000, malformed_rate=0.05, attack_at=3_000)
    sent = list(generate(config))
    report = simulate(topics, config, rate=None, progress=False)
    assert report.total == len(sent)
    assert report.counts["malformed"] == sum(r.type == "malformed" for r in sent) > 0
    got = read_back(topics)
    assert len(got) == len(sent)
    # Per key (so per partition), the order is the order sent.
    by_key_sent: dict[bytes, list[bytes]] = defaultdict(list)
    for record in sent:
        by_key_sent[record.key].append(record.value)
    by_key_got: dict[bytes, list[bytes]] = defaultdict(list)
    for message in got:
        by_key_got[message.key].append(message.value)
    assert by_key_got == by_key_sent


@pytest.mark.integration
def test_publish_with_our_producer_settings(topics: StreamSettings) -> None:
    producer = make_producer(topics, linger_ms=5)
    try:
        assert producer.config["acks"] == -1
        assert producer.config["enable_idempotence"] is True
        batch = list(generate(SimulatorConfig(seed=22, count=1_000)))
        report = publish(producer, topics.topic_events, batch, rate=20_000)
    finally:
        producer.close(timeout=10)
    assert report.total == 1_000
    assert len(read_back(topics)) == 1_000


@pytest.mark.integration
def test_the_command_stops_at_its_duration_and_reports_json(topics: StreamSettings) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        **stack_env(topics),
        "HEADRACE_TOPIC_EVENTS": topics.topic_events,
    }
    # 1,000,000 events at 1,000,000/s are more than one second holds on any machine: the
    # duration, not the count, ends the run.
    argv = ["--seed", "23", "--rate", "1000000", "--duration", "1", "--quiet", "--json"]
    done = headrace(env, "simulate", *argv)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 0 < report["total"] < 1_000_000
    assert report["elapsed_s"] < 30
    assert report["total"] == sum(report[kind] for kind in REPORT_TYPES if kind != "attack")
    sent = list(generate(SimulatorConfig(seed=23, count=report["total"])))
    assert report["impression"] == sum(r.type == "impression" for r in sent)
    assert len(read_back(topics)) == report["total"]
