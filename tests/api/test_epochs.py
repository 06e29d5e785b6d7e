"""A running API follows the state that is really in Redis, without a restart, when that
state goes back: a restore (into a Redis that lost everything, or only its last writes), a
standby taking over after Redis lost its last writes, a learner that keeps running while
Redis loses them under it.

Each test runs `headrace serve` as a real process serving version N, then moves the state
back to an older one, whose version number is at most N. The replica must serve that state
(same epoch and version, same scores as a replica started afterwards) within a few poll
intervals.

Redis losing its last writes (a failover to a replica that missed them, a restart from an
append-only file without its last second) is played with DUMP and RESTORE of this test's
keys: every key put back as it was at an earlier moment, every later key gone. A FLUSHALL
is played by deleting this test's keys (the Redis is shared with the other tests).
"""

import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from headrace.sim.simulator import SimRecord, generate, world
from learner.epoch import NO_STATE, Stamp
from learner.layout import ShardKeys
from stream.settings import StreamSettings
from tests.api.helpers import ApiProcess, api_env, recent_config, request_body
from tests.learner.harness import (
    InProcessLearner,
    LearnerProcess,
    caught_up,
    end_offsets,
    learner_env,
    predictions,
    probe_rows,
    send,
    store,
    wait_until,
)
from tests.support import headrace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLL_S = 0.5
"""The replicas' HEADRACE_MODEL_POLL_S."""
FOLLOW_S = 4 * POLL_S
"""How soon a running replica must serve the state in Redis once it can see it."""
STREAM = recent_config(seed=41, count=6_000, n_users=200, n_items=80)
REQUESTS = [
    request_body(world(STREAM).request_for(u, np.random.default_rng(u), k=10)) for u in range(20)
]
Answers = list[tuple[Stamp, list[float]]]


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    return list(generate(STREAM))


@pytest.fixture
def replicas() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for api in started:
        api.proc.send_signal(signal.SIGCONT)
        api.close()


@pytest.fixture
def learners() -> Iterator[list[LearnerProcess]]:
    started: list[LearnerProcess] = []
    yield started
    for learner in started:
        learner.close()


def start_replica(settings: StreamSettings, started: list[ApiProcess], log: Path) -> ApiProcess:
    api = ApiProcess(api_env(settings, model_poll_s=POLL_S), log)
    started.append(api)
    api.wait_listening()
    return api


def served(api: ApiProcess) -> Stamp:
    """The (epoch, version) the replica serves, as /models says."""
    (model,) = httpx.get(f"{api.url}/models").json()["models"]
    return Stamp(model.get("epoch", 0), model["version"]) if "version" in model else NO_STATE


def stored(client: redis.Redis, settings: StreamSettings) -> Stamp:
    """The (epoch, version) of the state in Redis."""
    keys = ShardKeys(settings.key_prefix, "main")
    return Stamp.parse(*client.hmget(keys.state, ["epoch", "version"]))


def answers(api: ApiProcess) -> Answers:
    out = []
    with httpx.Client(base_url=api.url) as client:
        for body in REQUESTS:
            got = client.post("/predict", json=body).json()
            stamp = Stamp(got.get("epoch", 0), got["version"])
            out.append((stamp, [s["score"] for s in got["scores"]]))
    return out


def same(a: Answers, b: Answers) -> bool:
    """The same state answered, with the same scores (features are computed at the time of
    the request: the aggregates' decay moves them by far less than the tolerance)."""
    return all(
        sa == sb and x == pytest.approx(y, rel=1e-4, abs=1e-7)
        for (sa, x), (sb, y) in zip(a, b, strict=True)
    )


def follows(api: ApiProcess, client: redis.Redis, settings: StreamSettings) -> float:
    """Seconds until the replica serves the state stored in Redis (which must not move)."""
    there = stored(client, settings)
    started = time.monotonic()
    wait_until(lambda: served(api) == there, FOLLOW_S, f"the running replica to serve {there}")
    return time.monotonic() - started


def capture(client: redis.Redis, prefix: str, without: set[bytes]) -> dict[bytes, bytes]:
    """Every key of the deployment but `without`, as DUMP serializes it."""
    names = [k for k in client.scan_iter(match=f"{prefix}:*", count=1000) if k not in without]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.dump(name)
    return dict(zip(names, pipe.execute(), strict=True))


def rewind(
    client: redis.Redis,
    prefix: str,
    captured: dict[bytes, bytes],
    keep: frozenset[bytes] = frozenset(),
) -> None:
    """The deployment's keys back to `captured`, those written since gone, `keep` kept."""
    now = [k for k in client.scan_iter(match=f"{prefix}:*", count=1000) if k not in keep]
    with client.pipeline(transaction=True) as pipe:
        if now:
            pipe.delete(*now)
        for name, dumped in captured.items():
            pipe.restore(name, 0, dumped, replace=True)
        pipe.execute()


def wipe(client: redis.Redis, prefix: str) -> None:
    """A FLUSHALL, for this deployment's keys."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.mark.parametrize("redis_before", ["intact", "flushed", "lost_last_writes"])
def test_a_restore_of_an_older_snapshot_is_served_by_a_running_replica(
    settings: StreamSettings,
    redis_client: redis.Redis,
    records: list[SimRecord],
    replicas: list[ApiProcess],
    tmp_path: Path,
    redis_before: str,
) -> None:
    env = learner_env(settings, snapshot_dir=str(tmp_path / "snapshots"))
    keys = ShardKeys(settings.key_prefix, "main")
    learner = InProcessLearner(settings, redis_client)
    learner.process(records[:2_000])
    learner.publish()
    learner.close()  # the operator's CLI snapshots a shard no learner owns by itself
    taken = headrace(env, "snapshot", "create")
    assert taken.returncode == 0, taken.stderr
    snapshot_id = taken.stdout.split()[1]
    assert learner.lease.try_acquire()
    learner.process(records[2_000:4_000])
    learner.publish()
    before_loss = capture(redis_client, settings.key_prefix, without={keys.lease.encode()})
    learner.process(records[4_000:])
    learner.publish()
    learner.publish()
    learner.close()  # the learner is gone with the disaster
    newest = stored(redis_client, settings)
    assert newest.version == 4

    api = start_replica(settings, replicas, tmp_path / "api.log")
    wait_until(lambda: served(api) == newest, 30, "the replica to serve the newest version")
    before = answers(api)

    # The replica does not look while Redis loses its state and the snapshot is restored:
    # both happen within one poll, or while the replica's connection is down.
    api.proc.send_signal(signal.SIGSTOP)
    if redis_before == "flushed":
        wipe(redis_client, settings.key_prefix)
    elif redis_before == "lost_last_writes":
        rewind(redis_client, settings.key_prefix, before_loss)
        assert store(redis_client, settings).version() == 2
    restored = headrace(env, "snapshot", "restore", snapshot_id, "--no-wait")
    assert restored.returncode == 0, restored.stderr
    now = stored(redis_client, settings)
    api.proc.send_signal(signal.SIGCONT)

    follow_s = follows(api, redis_client, settings)
    assert now.epoch > newest.epoch
    if redis_before != "intact":
        assert now.version <= newest.version  # the number alone would say "older"
    fresh = start_replica(settings, replicas, tmp_path / "fresh.log")
    wait_until(lambda: served(fresh) == now, 30, "a replica started after the restore")
    running, started_after = answers(api), answers(fresh)
    assert same(running, started_after)
    assert not same(before, running)  # the restored model answers differently
    print(f"{redis_before}: served {now} {follow_s:.2f} s after the replica could look")


def test_a_rollback_starts_a_new_epoch(
    settings: StreamSettings, redis_client: redis.Redis, records: list[SimRecord]
) -> None:
    learner = InProcessLearner(settings, redis_client)
    learner.process(records[:2_000])
    learner.publish()
    good = learner.learner.variants["main"].model
    learner.process(records[2_000:])
    learner.publish()
    learned = stored(redis_client, settings)
    learner.learner.set_shadows({"main": good})
    learner.learner.roll_back("main", "drill")
    learner.publish()
    rolled_back = stored(redis_client, settings)
    assert rolled_back.version == learned.version + 1 and rolled_back.epoch > learned.epoch
    learner.publish()
    assert stored(redis_client, settings) == Stamp(rolled_back.epoch, learned.version + 2)
    learner.close()


@pytest.mark.parametrize("owner", ["dies_and_a_standby_takes_over", "keeps_running"])
def test_after_redis_lost_its_last_writes_every_replica_follows_the_learner(
    one_partition: StreamSettings,
    redis_client: redis.Redis,
    records: list[SimRecord],
    replicas: list[ApiProcess],
    learners: list[LearnerProcess],
    tmp_path: Path,
    owner: str,
) -> None:
    settings = one_partition
    keys = ShardKeys(settings.key_prefix, "main")
    lease = keys.lease.encode()
    env = learner_env(settings, publish_every_events=2_000)
    send(settings, records[:3_000])
    first = LearnerProcess(env, tmp_path / "a.log")
    learners.append(first)
    ends = end_offsets(settings)
    wait_until(lambda: caught_up(redis_client, settings, ends), 60, "the learner")
    before_loss = capture(redis_client, settings.key_prefix, without={lease})
    lost = stored(redis_client, settings)
    # The events to be lost arrive a few at a time, each batch its own version; replayed
    # at once, they take far fewer: the replay alone does not number past the version the
    # replica serves.
    for start in range(3_000, len(records), 100):
        send(settings, records[start : start + 100])
        wait_until(partial(caught_up, redis_client, settings, end_offsets(settings)), 60, "it")
    ends = end_offsets(settings)
    newest = stored(redis_client, settings)
    assert newest.version >= lost.version + 30
    learned = store(redis_client, settings).load_meta()
    probe = probe_rows(STREAM)
    predicted = predictions(redis_client, settings, probe)
    api = start_replica(settings, replicas, tmp_path / "api.log")
    wait_until(lambda: served(api) == newest, 30, "the replica to serve the newest version")

    lost_at = time.monotonic()
    if owner == "dies_and_a_standby_takes_over":
        first.kill()
        rewind(redis_client, settings.key_prefix, before_loss)  # the lease expired with it
        learners.append(LearnerProcess(env, tmp_path / "b.log"))
    else:
        # The owner's lease survived: it finds out from the state itself.
        rewind(redis_client, settings.key_prefix, before_loss, keep=frozenset({lease}))

    wait_until(lambda: stored(redis_client, settings) != lost, 30, "a learner to publish")
    published_s = time.monotonic() - lost_at
    wait_until(lambda: caught_up(redis_client, settings, ends), 60, "the replay")
    now = stored(redis_client, settings)
    follow_s = follows(api, redis_client, settings)
    assert now.epoch > lost.epoch
    assert now.version < newest.version  # the number alone would say "older"
    fresh = start_replica(settings, replicas, tmp_path / "fresh.log")
    wait_until(lambda: served(fresh) == now, 30, "a replica started after the loss")
    assert same(answers(api), answers(fresh))
    # The lost events were learned again, once: the model is the one before the loss.
    meta: dict[str, Any] | None = store(redis_client, settings).load_meta()
    assert meta is not None and learned is not None
    for field in ("offsets", "counts", "joins"):
        assert meta[field] == learned[field], field
    assert predictions(redis_client, settings, probe) == predicted
    print(
        f"{owner}: Redis went back to {lost} while {newest} was served; a learner published "
        f"{published_s:.2f} s later; {now} served {follow_s:.2f} s after the replay ended"
    )
