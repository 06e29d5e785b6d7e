"""The guards inside a real learner, on the real Kafka and Redis."""

from pathlib import Path

import pytest
import redis

from headrace.sim.simulator import SimulatorConfig, generate
from learner import control
from learner.layout import ShardKeys
from stream.settings import StreamSettings
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

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def quarantined(settings: StreamSettings, expected_at_least: int) -> list[bytes]:
    values = [r.value for r in read_all(settings, settings.topic_quarantine)]
    assert len(values) >= expected_at_least
    return values


def test_a_bot_cohort_is_quarantined_and_normal_users_are_not(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(SimulatorConfig(seed=1, count=60_000, attack_at=20_000)))
    attack = {r.value for r in records if r.is_attack}
    normal = [r.value for r in records if not r.is_attack and r.type != "malformed"]
    send(topics, records)
    ends = end_offsets(topics)
    proc = LearnerProcess(learner_env(topics), tmp_path / "learner.log")
    try:
        wait_until(lambda: caught_up(redis_client, topics, ends), 120, "the learner")
    finally:
        assert proc.stop() == 0
    blocked = set(quarantined(topics, int(0.95 * len(attack))))
    attack_share = len(blocked & attack) / len(attack)
    normal_share = sum(v in blocked for v in normal) / len(normal)
    # Measured here: 99.5% of the attack's events blocked, 0% of normal users' events.
    assert attack_share >= 0.95, attack_share
    assert normal_share <= 0.005, normal_share
    meta = store(redis_client, topics).load_meta()
    assert meta is not None
    counted = sum(v for k, v in meta["counts"].items() if k.startswith("quarantined_"))
    assert counted == len(blocked)


def test_an_operator_rollback_serves_the_last_known_good_model_with_its_reason(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    records = list(generate(SimulatorConfig(seed=8, count=12_000)))
    # The automatic rollback guard is off: whether it fires on its own depends on which
    # model the wall-clock snapshot interval caught as last known good, and this test is
    # about the operator's rollback alone (the manual one loads the shadows itself).
    env = learner_env(
        topics,
        snapshot_dir=str(tmp_path / "snapshots"),
        snapshot_interval_s=0.5,
        rollback_enabled="false",
    )
    keys = ShardKeys(topics.key_prefix, "main")
    proc = LearnerProcess(env, tmp_path / "learner.log")
    try:
        send(topics, records[:6_000])
        wait_until(lambda: caught_up(redis_client, topics, end_offsets(topics)), 60, "catch up")
        wait_until(lambda: any((tmp_path / "snapshots").glob("*.lkg")), 30, "a last known good")
        send(topics, records[6_000:])
        ends = end_offsets(topics)
        wait_until(lambda: caught_up(redis_client, topics, ends), 60, "catch up")
        before = store(redis_client, topics).version()
        command_id = control.send(redis_client, keys, "rollback", reason="bad deploy drill")
        result = control.wait_result(redis_client, keys, command_id, 30)
        assert result is not None and result["ok"], result
        assert result["version"] > before
        meta = store(redis_client, topics).load_meta()
        assert meta is not None
        lineage = meta["lineage"]
        assert lineage["rolled_back_from"] == before
        assert lineage["reason"] == "bad deploy drill"
        assert meta["counts"]["rollbacks"] == 1
    finally:
        assert proc.stop() == 0
