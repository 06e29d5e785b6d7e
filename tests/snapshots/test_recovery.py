"""Disaster recovery on the real Kafka and Redis: snapshots taken by the learner, restored.

The disaster drill runs against a Redis server of its own (started here on a
free port), so that FLUSHALL wipes nothing but this test's state.
"""

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from headrace.devstack import redis_local
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate
from learner.layout import ShardKeys
from learner.redisconn import connect
from snapshots.directory import DirectoryStore
from stream.settings import StreamSettings
from stream.topics import ensure_topics
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
from tests.learner.test_exactly_once import assert_same_learning, reference_run
from tests.support import free_port, headrace, signing_key, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = SimulatorConfig(seed=21, count=20_000, n_users=300, n_items=100)


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    return list(generate(CONFIG))


@pytest.fixture(scope="module")
def probe() -> list[dict[str, Any]]:
    return probe_rows(CONFIG)


@pytest.fixture
def own_redis(settings: StreamSettings, tmp_path: Path) -> Iterator[StreamSettings]:
    """This test's settings, pointed at a Redis server of its own."""
    own = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            # One server of its own, even when the test stack runs Sentinel.
            "redis_sentinels": "",
            "stack_redis": "single",
            "stack_dir": str(tmp_path / "stack"),
        }
    )
    redis_local.start(own)
    try:
        yield own
    finally:
        redis_local.stop(own)


def snapshot_env(
    settings: StreamSettings, snapshot_dir: Path, **overrides: object
) -> dict[str, str]:
    return learner_env(
        settings,
        snapshot_dir=str(snapshot_dir),
        snapshot_interval_s=overrides.pop("snapshot_interval_s", 1),
        **overrides,
    )


def listed(snapshot_dir: Path) -> list[str]:
    return [i.snapshot_id for i in DirectoryStore(snapshot_dir, signing_key().public).list()]


def test_disaster_drill_flushall_and_kill_9_then_restart_from_the_newest_snapshot(
    own_redis: StreamSettings,
    records: list[SimRecord],
    probe: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    settings = own_redis.model_copy(update={"partitions": 1})
    ensure_topics(settings)
    client = connect(settings)
    snapshot_dir = tmp_path / "snapshots"
    # No automatic rollback: it compares the served model with the last-known-good one, which
    # the wall-clock snapshot interval picks, so whether it fires is not the stream's doing,
    # and the reference (no snapshots, so no last-known-good model) never rolls back.
    env = snapshot_env(settings, snapshot_dir, rollback_enabled="false")
    learner = LearnerProcess(env, tmp_path / "learner.log")
    try:
        # Snapshots are taken when something new was published: feed the stream in steps.
        for step, (start, end) in enumerate([(0, 6_000), (6_000, 12_000)], start=1):
            send(settings, records[start:end])

            def taken(n: int = step) -> bool:
                return len(listed(snapshot_dir)) >= n

            wait_until(taken, 60, f"snapshot {step}")
        send(settings, records[12_000:])
        # Wipe Redis once the learner has published some of the last step's events.
        wait_for(
            lambda: sum(committed_offsets(client, settings).values()) > 12_000,
            "the learner to publish past the second step",
        )
        client.flushall()
    finally:
        learner.kill()
    assert client.dbsize() == 0

    ends = end_offsets(settings)
    restarted = LearnerProcess(env, tmp_path / "learner.log")
    try:
        wait_until(lambda: caught_up(client, settings, ends), 120, "the restored learner")
    finally:
        assert restarted.stop() == 0
    meta = store(client, settings).load_meta()
    assert meta is not None
    assert meta["lineage"]["restored_from"] in listed(snapshot_dir)
    assert meta["lineage"]["reason"] == "cold start with an empty Redis"

    reference = reference_run(settings, client)
    assert_same_learning(client, settings, reference, probe)


def test_operator_restore_with_and_without_replay(
    one_partition: StreamSettings,
    redis_client: redis.Redis,
    records: list[SimRecord],
    probe: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    settings = one_partition
    snapshot_dir = tmp_path / "snapshots"
    env = snapshot_env(settings, snapshot_dir, snapshot_interval_s=3600)
    send(settings, records[:8_000])
    learner = LearnerProcess(env, tmp_path / "learner.log")
    try:
        wait_until(lambda: caught_up(redis_client, settings, end_offsets(settings)), 60, "catch up")
        taken = headrace(env, "snapshot", "create")
        assert taken.returncode == 0, taken.stderr
        snapshot_id = taken.stdout.split()[1]
        at_snapshot = store(redis_client, settings).load_meta()
        assert at_snapshot is not None

        send(settings, records[8_000:])
        ends = end_offsets(settings)
        wait_until(lambda: caught_up(redis_client, settings, ends), 60, "catch up")
        before = store(redis_client, settings).load_meta()
        assert before is not None
        predicted_before = predictions(redis_client, settings, probe)

        # With replay: the events since the snapshot are learned again, to the same result.
        replayed = headrace(env, "snapshot", "restore", snapshot_id, "--no-wait")
        assert replayed.returncode == 0, replayed.stderr
        version = int(replayed.stdout.split()[-1])
        wait_until(
            lambda: (
                store(redis_client, settings).version() > version
                and caught_up(redis_client, settings, ends)
            ),
            60,
            "the replay",
        )
        after = store(redis_client, settings).load_meta()
        assert after is not None
        assert after["lineage"]["restored_from"] == snapshot_id
        assert after["lineage"]["replay"] is True
        assert after["variants"]["main"]["n_learned"] == before["variants"]["main"]["n_learned"]
        assert predictions(redis_client, settings, probe) == predicted_before

        # Without replay: back to the snapshot's state; the events since are skipped.
        skipped = headrace(env, "snapshot", "restore", snapshot_id, "--no-replay")
        assert skipped.returncode == 0, skipped.stderr
        # The command returns once the learner has published the restored state.
        now = store(redis_client, settings).load_meta()
        assert now is not None
        assert now["version"] == int(skipped.stdout.split()[-1])
        assert now["lineage"]["replay"] is False
        assert now["variants"]["main"]["n_learned"] == at_snapshot["variants"]["main"]["n_learned"]
        assert now["offsets"] == {str(p): o for p, o in ends.items()}
        assert now["lineage"]["skipped"] == {
            str(p): [at_snapshot["offsets"][str(p)], o] for p, o in ends.items()
        }
    finally:
        assert learner.stop() == 0


def test_a_learner_killed_while_snapshotting_leaves_no_partial_snapshot(
    one_partition: StreamSettings,
    redis_client: redis.Redis,
    records: list[SimRecord],
    tmp_path: Path,
) -> None:
    settings = one_partition
    snapshot_dir = tmp_path / "snapshots"
    env = snapshot_env(settings, snapshot_dir, snapshot_interval_s=0.05)
    send(settings, records)
    rng = random.Random(9)
    for _ in range(4):
        learner = LearnerProcess(env, tmp_path / "learner.log")
        wait_until(lambda: len(listed(snapshot_dir)) >= 1, 60, "a snapshot")
        time.sleep(rng.uniform(0.05, 0.5))
        learner.kill()
    store_ = DirectoryStore(snapshot_dir, signing_key().public)
    assert store_.rejected() == []
    files = sorted(p.name for p in snapshot_dir.iterdir())
    visible = [f for f in files if f.endswith(".snap") and not f.startswith(".")]
    # A kill mid-write can only leave a hidden temp file, which is never listed.
    assert all(f.startswith(".") or f.endswith((".snap", ".lkg")) for f in files)
    assert sorted(listed(snapshot_dir)) == sorted(f.removesuffix(".snap") for f in visible)
    env_cli = dict(os.environ, HEADRACE_VERIFY_KEY=signing_key().public.text)
    checked = headrace(env_cli, "snapshot", "verify", *(str(snapshot_dir / f) for f in visible))
    assert checked.returncode == 0, checked.stdout


def test_restore_refuses_a_path_traversal_id(
    topics: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = snapshot_env(topics, tmp_path / "snapshots")
    refused = headrace(env, "snapshot", "restore", "../../etc/passwd", "--no-wait")
    assert refused.returncode == 1
    assert "../../etc/passwd" in refused.stderr and "invalid" in refused.stderr.lower()
    assert redis_client.exists(ShardKeys(topics.key_prefix, "main").state) == 0
