"""kill -9 the Redis primary in the middle of a stream: the sentinels promote the replica,
the learner resumes from the state and offsets the new primary really holds (what the
replica had not received is learned again, once), and every API replica answers from the
new primary without a restart."""

import asyncio
import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest
import redis

from api.resp import RespError, RespPipeline, pack
from headrace.devstack import redis_local, redis_sentinel
from learner.epoch import Stamp
from learner.layout import ShardKeys, read_stamp
from learner.redisconn import async_primary, async_sentinels, sentinel_master
from stream.settings import StreamSettings
from tests.api.helpers import JOIN_WINDOW_S, ApiProcess, api_env
from tests.failover.scenario import (
    RATE,
    WAIT_S,
    assert_exactly_once,
    assert_served,
    drain,
    first_records,
    start_traffic,
    stream,
)
from tests.failover.traffic import Answer, Client, Feed, bodies
from tests.learner.harness import LearnerProcess, learner_env, store
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def pid_at(settings: StreamSettings, port: int) -> int | None:
    """The stack's Redis server on `port`: the one started as primary, or the replica."""
    if port == settings.redis_host_port[1]:
        return redis_local.running_pid(settings)
    replica = redis_sentinel.members(settings)[0]
    assert replica.port == port
    return redis_sentinel.running_pid(replica)


def stamp_at(settings: StreamSettings, host: str, port: int) -> Stamp:
    client = redis.Redis(host=host, port=port, password=settings.redis_password_value)
    try:
        return read_stamp(client, ShardKeys(settings.key_prefix, "main"))
    finally:
        client.close()


def test_blocking_and_asyncio_clients_are_told_the_same_primary(cluster: StreamSettings) -> None:
    sentinels = async_sentinels(
        cluster.sentinel_addresses, cluster.redis_url, cluster.redis_password_value, 2.0
    )
    told = asyncio.run(async_primary(sentinels, cluster.redis_sentinel_service))
    assert told == sentinel_master(cluster)
    assert told[1] in (cluster.redis_host_port[1], redis_sentinel.members(cluster)[0].port)


def test_the_api_pipeline_reads_from_the_primary_and_refuses_a_replica(
    cluster: StreamSettings, cluster_redis: redis.Redis
) -> None:
    cluster_redis.set(f"{cluster.key_prefix}:probe", b"here")
    primary = sentinel_master(cluster)
    assert primary is not None
    servers = [
        cluster.redis_host_port,
        *((m.host, m.port) for m in redis_sentinel.members(cluster)),
    ]
    replica = next(a for a in servers[:2] if a[1] != primary[1])

    async def read(named: tuple[str, int] | None) -> list[object]:
        pipeline = RespPipeline(
            cluster.redis_url,
            5.0,
            password=cluster.redis_password_value,
            sentinels=cluster.sentinel_addresses,
            service=cluster.redis_sentinel_service,
        )
        if named is not None:
            # The sentinels' answer as it may be just after a failover: stale.
            async def stale() -> tuple[str, int]:
                return named

            pipeline._primary = stale  # type: ignore[method-assign]
        try:
            return await pipeline.execute(pack("GET", f"{cluster.key_prefix}:probe"), 1)
        finally:
            pipeline.close()

    assert asyncio.run(read(None)) == [b"here"]
    with pytest.raises(RespError, match="slave"):
        asyncio.run(read(replica))


def from_new_primary(client: Client, after: float, first: Stamp) -> Answer | None:
    """The client's first answer since `after` with online features and a state at least
    as new as the first one published to the new primary."""
    return next(
        (
            a
            for a in client.answers
            if a.at > after
            and a.status == 200
            and not a.degraded
            and (a.epoch, a.version) >= (first.epoch, first.version)
        ),
        None,
    )


def test_primary_killed_mid_stream_the_replica_takes_over_and_nothing_is_learned_twice(
    cluster: StreamSettings, cluster_redis: redis.Redis, tmp_path: Path
) -> None:
    config = stream(seed=43)
    records = first_records(cluster, config)
    # The production shape: an active learner and a standby, in case the active one exits.
    env = learner_env(cluster, join_window_s=JOIN_WINDOW_S)
    learners = [LearnerProcess(env, tmp_path / f"learner{i}.log") for i in range(2)]
    apis = [ApiProcess(api_env(cluster), tmp_path / f"api{i}.log") for i in range(2)]
    clients = [Client(api.url, bodies(config)) for api in apis]
    feed = Feed(cluster, records, rate=RATE)
    try:
        start_traffic(cluster, cluster_redis, apis, clients, feed)

        old = sentinel_master(cluster)
        assert old is not None
        replica = next(m for m in redis_sentinel.members(cluster) if m.role == "replica")
        # After an earlier failover the server started as primary is the replica.
        started_replica = old[1] == replica.port
        spare = cluster.redis_host_port if started_replica else (replica.host, replica.port)
        pid = pid_at(cluster, old[1])
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # What the replica had when its primary died: all the new primary starts with.
        replicated = stamp_at(cluster, *spare)

        wait_for(lambda: sentinel_master(cluster) == spare, "the replica promoted", WAIT_S)
        promoted_s = time.monotonic() - killed_at

        def republished() -> Stamp | None:
            try:
                now = store(cluster_redis, cluster).stamp()
            except redis.RedisError:
                return None
            return now if now != replicated else None

        first = wait_for(republished, "the learner publishing to the new primary", WAIT_S)
        learner_s = time.monotonic() - killed_at
        served_s = []
        for client in clients:
            answer = wait_for(
                partial(from_new_primary, client, killed_at, first),
                "an API replica answering from the new primary",
                WAIT_S,
            )
            served_s.append(answer.at - killed_at)
        print(
            f"Redis primary killed: replica promoted after {promoted_s:.1f} s, the learner "
            f"published again after {learner_s:.1f} s ({replicated} -> {first}), the API "
            f"replicas answered from the new primary after "
            + ", ".join(f"{s:.1f}" for s in served_s)
            + " s"
        )
        exited = [learner.pid for learner in learners if learner.proc.poll() is not None]
        print(f"learners that exited during the failover: {exited or 'none'}")

        ends = drain(cluster, cluster_redis, feed)
        for learner in learners:
            learner.stop(60)
    except BaseException:
        # Why, when it fails: the learners' own account of the failover.
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}", *log.read_text(errors="replace").splitlines()[-40:], sep="\n")
        raise
    finally:
        for client in clients:
            client.close()
        for api in apis:
            api.close()
        for learner in learners:
            learner.close()

    assert_exactly_once(cluster, cluster_redis, config, feed, ends)
    assert_served(clients)
