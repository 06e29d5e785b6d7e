"""The join's outcome does not depend on how a consumer interleaves partitions.

A learner catching up on a backlog reads each partition in long runs; one read live sees
them interleave as they arrive. Either way every impression must close with the label
its own stream gives it: the same positives, negatives and late purchases as one learner
reading the same events in event-time order. Closing follows the event-time watermark,
which a partition still holding unread records keeps back.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from guards.settings import GuardSettings
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate
from learner.aggregates import AggregateCache
from learner.layout import ShardKeys
from learner.loop import Learner
from learner.settings import LearnerSettings
from stream.events import Impression, Rejection, dump_event, parse_event
from stream.producer import make_producer
from stream.settings import StreamSettings
from stream.topics import ensure_topics
from tests.learner.harness import (
    LearnerProcess,
    caught_up,
    end_offsets,
    learner_env,
    send,
    store,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 300.0
CONFIG = SimulatorConfig(seed=9, count=15_000, n_users=400, n_items=200)
COMPARED = ("positive", "negative_window", "late_outcome", "duplicate_outcome", "unknown_outcome")


def ticks(records: list[SimRecord], partitions: int) -> list[tuple[int, bytes]]:
    """One impression per partition, two windows after the stream: every window closes."""
    last = parse_event(records[-1].value)
    shown = next(e for r in records if isinstance(e := parse_event(r.value), Impression))
    assert not isinstance(last, Rejection)
    out = []
    for p in range(partitions):
        tick = Impression(
            event_id=f"tick-e{p}",
            ts=last.ts + timedelta(seconds=2 * WINDOW_S),
            user_id=f"tick-{p}",
            impression_id=f"tick-m{p}",
            item_id=shown.item_id,
            context=shown.context,
            item=shown.item,
        )
        out.append((p, dump_event(tick)))
    return out


def reference(
    client: redis.Redis, settings: StreamSettings, records: list[SimRecord], partitions: int
) -> dict[str, Any]:
    """The join of one learner reading every event in event-time order."""
    core = Learner(
        LearnerSettings(metrics_port=0, join_window_s=WINDOW_S),
        ShardKeys(f"{settings.key_prefix}-ref", "main"),
        AggregateCache(client),
        GuardSettings(),
    )
    values = [r.value for r in records] + [v for _, v in ticks(records, partitions)]
    for offset, value in enumerate(values):
        event = parse_event(value)
        if isinstance(event, Rejection):
            continue
        core.prefetch([event])
        core.process(event, 0, offset)
    return {**core.joins.counts, "pending": len(core.joins)}


def send_ticks(settings: StreamSettings, records: list[SimRecord], partitions: int) -> None:
    producer = make_producer(settings)
    try:
        for partition, value in ticks(records, partitions):
            producer.send(settings.topic_events, value=value, key=b"tick", partition=partition)
        producer.flush(30)
    finally:
        producer.close(timeout=10)


@pytest.mark.parametrize("partitions", [3, 12])
@pytest.mark.parametrize("mode", ["backlog", "live"])
def test_the_join_is_the_same_however_partitions_interleave(
    settings: StreamSettings,
    redis_client: redis.Redis,
    tmp_path: Path,
    partitions: int,
    mode: str,
) -> None:
    topics = settings.model_copy(update={"partitions": partitions})
    ensure_topics(topics)
    records = list(generate(CONFIG))
    want = reference(redis_client, topics, records, partitions)
    assert want["positive"] > 100 and want["negative_window"] > 5_000
    env = learner_env(topics, join_window_s=WINDOW_S)

    def learned() -> None:
        ends = end_offsets(topics)
        wait_until(lambda: caught_up(redis_client, topics, ends), 180, "the learner")

    if mode == "backlog":
        send(topics, records)
        send_ticks(topics, records, partitions)
        proc = LearnerProcess(env, tmp_path / "learner.log")
        try:
            learned()
        finally:
            assert proc.stop() == 0
    else:
        proc = LearnerProcess(env, tmp_path / "learner.log")
        try:
            # Live: a few hundred events at a time, each batch learned before the next.
            for start in range(0, len(records), 400):
                send(topics, records[start : start + 400])
                learned()
            send_ticks(topics, records, partitions)
            learned()
        finally:
            assert proc.stop() == 0
    meta = store(redis_client, topics).load_meta()
    assert meta is not None
    got = meta["joins"]
    assert {k: got.get(k, 0) for k in (*COMPARED, "pending")} == {
        k: want.get(k, 0) for k in (*COMPARED, "pending")
    }
