"""The drift guard inside a real learner, on the real Kafka and Redis.

One-partition topics: the learner then sees one total order, the same as the offline
measurements quoted here, so the figures are exact.
"""

from pathlib import Path
from typing import Any

import pytest
import redis

from api.settings import ApiSettings
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate
from learner import alertstore
from snapshots.directory import DirectoryStore
from stream.settings import StreamSettings
from stream.topics import ensure_topics
from tests.api.conftest import running_app
from tests.learner.harness import (
    LearnerProcess,
    caught_up,
    committed_offsets,
    end_offsets,
    learner_env,
    send,
    store,
    wait_until,
)
from tests.support import own_topics, signing_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_learner(
    settings: StreamSettings,
    client: redis.Redis,
    records: list[SimRecord],
    log: Path,
    **env: object,
) -> list[dict[str, Any]]:
    """Learn `records` with a learner process; every alert it published, oldest first."""
    send(settings, records)
    ends = end_offsets(settings)
    proc = LearnerProcess(learner_env(settings, **env), log)
    try:
        wait_until(lambda: caught_up(client, settings, ends), 300, "the learner")
    finally:
        assert proc.stop() == 0
    return alertstore.recent(client, settings.key_prefix, limit=alertstore.MAX_ALERTS)


def loss_alerts(client: redis.Redis, settings: StreamSettings) -> list[dict[str, Any]]:
    """Alerts on how well the model does: its loss or its ranking (not the records that
    close them)."""
    every = alertstore.recent(client, settings.key_prefix, limit=alertstore.MAX_ALERTS)
    return [a for a in every if a["signal"] in ("loss", "ranking") and a.get("ends") is None]


def test_a_concept_drift_is_alerted_by_the_performance_detectors_soon_after_it(
    one_partition: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    drift_at, step, bound = 70_000, 500, 6_000
    records = list(generate(SimulatorConfig(seed=7, count=90_000, drift_at=drift_at)))
    proc = LearnerProcess(learner_env(one_partition), tmp_path / "learner.log")

    def learn(part: list[SimRecord]) -> None:
        send(one_partition, part)
        ends = end_offsets(one_partition)
        wait_until(lambda: caught_up(redis_client, one_partition, ends), 180, "the learner")

    try:
        learn(records[:drift_at])
        # The stream before the drift raises no loss alert.
        assert loss_alerts(redis_client, one_partition) == []
        # Then the drifted stream, `step` events at a time, until the loss alert comes.
        delay = 0
        while not loss_alerts(redis_client, one_partition) and delay < bound:
            learn(records[drift_at + delay : drift_at + delay + step])
            delay += step
        learn(records[drift_at + delay :])
    finally:
        assert proc.stop() == 0
    alerts = loss_alerts(redis_client, one_partition)
    assert alerts, f"no loss alert within {bound} events of the drift"
    first = alerts[0]
    # Measured offline on the same order: the served predictions' AUC fell from 0.767 to
    # 0.513 and the ranking guard alerted 4,355 events after the drift (the guards see an
    # impression 300 s of event time after it, about 3,600 events); the log loss rose by
    # a fifth, within its noise. Bound: 6,000 events.
    assert delay <= bound, delay
    assert first["detector"] in ("page_hinkley", "adwin", "auc_drop")
    if first["detector"] == "auc_drop":
        assert first["value"] < first["threshold"]
    else:
        assert first["value"] > first["threshold"]
    # One drift, one alert (per detector): the detectors re-arm and the model re-learns.
    assert {a["id"].rsplit(":", 2)[1] for a in alerts} == {first["id"].rsplit(":", 2)[1]}


# The longest stream of the suite: about 90 s on a quiet machine, several minutes when
# other work shares the cores, so it gets more than the suite's 300 s.
@pytest.mark.timeout(1200)
def test_a_clean_stream_of_200k_events_raises_no_loss_alert_and_no_rollback(
    one_partition: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # 200,000 records, ~148,000 learned examples. Measured offline on the same order with
    # the previous defaults (min increase 25 % over 5 blocks, against every block since
    # arming), seeds 2 and 5 each raised one false Page-Hinkley alert (the loss creeps up
    # from ~0.08 to ~0.15 as the store's aggregates fill); with the defaults now (30 % over
    # 8 blocks, against the last 100 blocks) neither raises any.
    # Snapshots every 2 s, so last-known-good models exist and are scored in shadow.
    records = list(generate(SimulatorConfig(seed=5, count=200_000)))
    snapshots = tmp_path / "snapshots"
    alerts = run_learner(
        one_partition,
        redis_client,
        records,
        tmp_path / "learner.log",
        snapshot_dir=snapshots,
        snapshot_interval_s=2,
    )
    assert [a for a in alerts if a["signal"] in ("loss", "ranking")] == []
    assert [a for a in alerts if a["detector"] == "rollback"] == []
    meta = store(redis_client, one_partition).load_meta()
    assert meta is not None
    assert "rollbacks" not in meta["counts"]
    assert "rolled_back_from" not in meta["lineage"]
    # The shadow was compared over most of the stream: a last-known-good snapshot was
    # taken in its first half. (How many follow depends on the gate and the machine's
    # pace; the store's loss level creeps up as its aggregates fill.)
    good = [i for i in DirectoryStore(snapshots, signing_key().public).list() if i.last_known_good]
    assert good
    assert min(sum(i.header.offsets.values()) for i in good) <= len(records) // 2


def second_shard_settings(settings: StreamSettings) -> StreamSettings:
    """Another set of one-partition topics and keys (under this test's key prefix)."""
    name = settings.topic_events.removesuffix(".events") + "-b"
    other = own_topics(settings, f"{settings.key_prefix}:b", name)
    ensure_topics(other)
    return other


# Sensitive PSI (windows of 1,000 examples, threshold 0.03): alerts every few thousand
# events, so some fall on each side of the restart.
CHATTY = {"drift_warmup": 1000, "drift_psi_window": 1000, "drift_psi_threshold": 0.03}


def listed(settings: StreamSettings) -> list[dict[str, Any]]:
    with running_app(ApiSettings(), settings, wait_ready=False) as client:
        response = client.get("/drift/alerts", params={"limit": 1000})
        assert response.status_code == 200
        alerts: list[dict[str, Any]] = response.json()["alerts"]
        return alerts


def test_alerts_survive_a_learner_kill_exactly_once_and_in_order(
    one_partition: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(SimulatorConfig(seed=12, count=40_000, drift_at=20_000)))
    # The same records, learned without interruption: what the restarted learner must match.
    reference = second_shard_settings(one_partition)
    run_learner(reference, redis_client, records, tmp_path / "reference.log", **CHATTY)
    expected = [a["id"] for a in listed(reference)]
    assert len(expected) >= 6, expected

    env = learner_env(one_partition, **CHATTY)
    send(one_partition, records[:20_000])
    first = LearnerProcess(env, tmp_path / "first.log")
    try:
        ends = end_offsets(one_partition)
        wait_until(lambda: caught_up(redis_client, one_partition, ends), 120, "the first half")
        send(one_partition, records[20_000:])
        # Killed in the middle of the second half, with learned but unpublished alerts lost.
        wait_until(
            lambda: committed_offsets(redis_client, one_partition).get(0, 0) > 24_000,
            120,
            "the second half to start",
        )
        first.kill()
    finally:
        first.close()
    before = listed(one_partition)
    assert 0 < len(before) < len(expected)
    second = LearnerProcess(env, tmp_path / "second.log")
    try:
        ends = end_offsets(one_partition)
        wait_until(lambda: caught_up(redis_client, one_partition, ends), 120, "the restart")
    finally:
        assert second.stop() == 0
    after = listed(one_partition)
    # What was listed before the kill is still listed, first, in the same order; the
    # restarted learner's detectors continued from the committed state, so it raised
    # exactly the alerts of the uninterrupted learner, none twice.
    assert after[: len(before)] == before
    assert [a["id"] for a in after] == expected
    assert len(after) > len(before)
    stream_ids = [tuple(map(int, a["stream_id"].split("-"))) for a in after]
    assert stream_ids == sorted(stream_ids)
