"""Several shards for real: 12 partitions in 3 shards, an active and a standby learner per
shard (`headrace learn` processes), two API replicas (`headrace serve`, one with two
workers), on the real Kafka and Redis.

- Every user is answered by the shard whose partitions hold the user's events, as Kafka
  placed them, at the version that shard published.
- kill -9 of one shard's active learner: its standby takes the lease, the other shards
  publish on meanwhile, the API answers every user throughout, and every event is taken
  in exactly once across the takeover (by event id and by the committed counters).
"""

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from itertools import takewhile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from bench.soak_accounting import audit_counts, audit_ids, joins_balance
from bench.soak_audit import expected
from headrace.sim.publish import publish
from headrace.sim.simulator import generate, world
from learner.epoch import Stamp
from learner.layout import ShardKeys, read_meta, read_stamps
from stream.producer import make_producer
from stream.settings import StreamSettings
from stream.shards import parse_shards
from stream.topics import ensure_topics
from tests.api.helpers import ApiProcess, api_env, recent_config, request_body
from tests.learner.harness import LearnerProcess, end_offsets, learner_env
from tests.support import read_topic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHARDS = "a=0,1,2,3;b=4,5,6,7;c=8,9,10,11"
PARTITIONS = 12
LEASE_TTL_MS = 3_000
"""The shipped lease: the takeover printed is the one a deployment gets."""

CONFIG = recent_config(seed=15, count=60_000, n_users=240)
FIRST = 6_000
"""Records sent before the API starts; the rest stream in around the kill, paced."""
RATE = 1_500.0


@pytest.fixture
def sharded(settings: StreamSettings) -> StreamSettings:
    own = settings.model_copy(update={"shards": SHARDS, "partitions": PARTITIONS})
    ensure_topics(own)
    return own


@pytest.fixture
def started() -> Iterator[list[LearnerProcess | ApiProcess]]:
    procs: list[LearnerProcess | ApiProcess] = []
    yield procs
    for proc in procs:
        proc.close()


def stamps(client: redis.Redis, prefix: str, names: list[str]) -> dict[str, Stamp]:
    return dict(zip(names, read_stamps(client, [ShardKeys(prefix, n) for n in names]), strict=True))


def caught_up(client: redis.Redis, prefix: str, names: list[str], ends: dict[int, int]) -> bool:
    committed: dict[int, int] = {}
    for name in names:
        meta = read_meta(client, ShardKeys(prefix, name)) or {}
        committed.update({int(p): int(o) for p, o in meta.get("offsets", {}).items()})
    return all(committed.get(p, 0) >= end for p, end in ends.items())


def lease_pid(client: redis.Redis, prefix: str, shard: str) -> int | None:
    """The pid of the process holding the shard's lease (host:pid:id|generation)."""
    raw = client.get(ShardKeys(prefix, shard).lease)
    return int(raw.decode().split(":")[1]) if raw is not None else None


def ready(api: ApiProcess) -> bool:
    return httpx.get(f"{api.url}/ready", timeout=30).status_code == 200


def predict(api: ApiProcess, body: dict[str, Any], starting: bool = False) -> dict[str, Any] | None:
    """The answer; None for a 503 while `starting` (a worker still loading its models)."""
    response = httpx.post(f"{api.url}/predict", json=body, timeout=30)
    if starting and response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_three_shards_answer_their_users_and_survive_a_learner_kill(
    sharded: StreamSettings,
    redis_client: redis.Redis,
    started: list[LearnerProcess | ApiProcess],
    tmp_path: Path,
) -> None:
    prefix = sharded.key_prefix
    layout = parse_shards(SHARDS, PARTITIONS)
    names = list(layout)
    shard_of = {p: name for name, parts in layout.items() for p in parts}
    records = generate(CONFIG)
    producer = make_producer(sharded)
    sent = publish(producer, sharded.topic_events, (next(records) for _ in range(FIRST))).total

    # Two learners a shard, started together: whichever takes the lease first is active.
    learners: dict[str, list[LearnerProcess]] = {}
    for name in names:
        env = learner_env(sharded, shard=name, lease_ttl_ms=LEASE_TTL_MS)
        learners[name] = [LearnerProcess(env, tmp_path / f"{name}{i}.log") for i in range(2)]
        started.extend(learners[name])
    ends = end_offsets(sharded)
    assert sum(ends.values()) == sent and len(ends) == PARTITIONS
    wait_for(lambda: caught_up(redis_client, prefix, names, ends), "every shard to catch up", 120)

    # Where Kafka put each user's events decides the shard that must answer the user.
    placed: dict[str, set[int]] = defaultdict(set)
    for record in read_topic(sharded, sharded.topic_events):
        placed[record.key.decode()].add(record.partition)
    assert all(len(parts) == 1 for parts in placed.values())
    owner = {user: shard_of[next(iter(parts))] for user, parts in placed.items()}
    assert set(owner.values()) == set(names)
    for name in names:
        meta = read_meta(redis_client, ShardKeys(prefix, name))
        assert meta is not None and meta["partitions"] == layout[name]

    # Two replicas, the first with two workers (`headrace serve --workers 2`): its /ready
    # is one worker's, so the other may still be loading for a moment.
    apis = [
        ApiProcess(api_env(sharded, model_poll_s=0.2), tmp_path / f"api{i}.log", workers=2 - i)
        for i in (0, 1)
    ]
    started.extend(apis)
    for api in apis:
        # Starting two workers on a starved machine takes a while: a generous wait.
        api.wait_listening(timeout=120)
        wait_for(partial(ready, api), "/ready", 120)
        listed = httpx.get(f"{api.url}/models").json()["models"]
        assert [m["model"] for m in listed] == names

    shop = world(CONFIG)
    rng = np.random.default_rng(4)
    users = sorted(owner)[::4]
    bodies = {u: request_body(shop.request_for(u, rng, k=3)) for u in users}
    published = stamps(redis_client, prefix, names)

    def answered_by_owner(api: ApiProcess, user: str) -> bool:
        """The user's shard answered, at the version that shard has in Redis now."""
        got = predict(api, bodies[user], starting=True)
        if got is None:
            return False
        assert got["model"] == owner[user], (user, got)
        now = stamps(redis_client, prefix, [owner[user]])[owner[user]]
        return Stamp(got["epoch"], got["version"]) == now

    for api in apis:
        for user in users:
            wait_for(partial(answered_by_owner, api, user), "the shard's version")

    # The rest of the stream comes in while one shard's active learner is killed.
    stop = threading.Event()
    later: list[int] = []

    def stream() -> None:
        rest = takewhile(lambda _: not stop.is_set(), records)
        later.append(publish(producer, sharded.topic_events, rest, rate=RATE).total)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        victim = "a"
        wait_for(
            lambda: stamps(redis_client, prefix, [victim])[victim] > published[victim],
            "shard a to learn the new events",
        )
        active_pid = lease_pid(redis_client, prefix, victim)
        active = next(p for p in learners[victim] if p.pid == active_pid)
        standby = next(p for p in learners[victim] if p.pid != active_pid)
        others = {n: lease_pid(redis_client, prefix, n) for n in names if n != victim}
        active.kill()
        killed_at = time.monotonic()
        before = stamps(redis_client, prefix, names)

        # Until the standby holds the lease, the API answers every user, the victim's from
        # the model it holds. `during`: the versions last read before a look at the lease
        # that found it not taken yet.
        probe = [next(u for u in users if owner[u] == n) for n in names]
        turn = 0
        during = before
        while True:
            read = stamps(redis_client, prefix, names)
            if lease_pid(redis_client, prefix, victim) == standby.pid:
                # Seen here up to a request later: the lease's age says when it was taken
                # (at the latest: the new owner may have renewed it since).
                left_ms = int(redis_client.pttl(ShardKeys(prefix, victim).lease))
                taken_at = time.monotonic() - (LEASE_TTL_MS - left_ms) / 1000
                break
            assert time.monotonic() - killed_at < 60, "the standby did not take the lease"
            during = read
            user = probe[turn % len(probe)]
            answer = predict(apis[turn % 2], bodies[user])
            assert answer is not None and answer["model"] == owner[user]
            turn += 1
        assert during[victim] == before[victim]
        # The other shards kept their learners and published while the victim had none.
        for name, pid in others.items():
            assert during[name] > before[name], name
            assert lease_pid(redis_client, prefix, name) == pid
        resumed = wait_for(
            lambda: (
                stamps(redis_client, prefix, [victim])[victim] > before[victim] and time.monotonic()
            ),
            "the standby's first publish",
        )
        print(
            f"shard {victim}: lease moved to the standby {taken_at - killed_at:.2f} s after "
            f"kill -9 (lease TTL {LEASE_TTL_MS / 1000:.1f} s), first publish after "
            f"{resumed - killed_at:.2f} s; shards "
            + ", ".join(f"{n} v{before[n].version}->v{during[n].version}" for n in others)
            + " meanwhile"
        )
    finally:
        stop.set()
        streamer.join(120)
    sent += later[0]
    producer.close(timeout=10)

    ends = end_offsets(sharded)
    assert sum(ends.values()) == sent > FIRST
    wait_for(lambda: caught_up(redis_client, prefix, names, ends), "every shard to catch up", 120)

    # Exactly once across the takeover: every event id taken in once by the committed
    # states together, and their counters what was produced.
    types, reasons, hashes = expected(CONFIG, sent)
    taken = [redis_client.lrange(ShardKeys(prefix, n).seen, 0, -1) for n in names]
    ids = audit_ids(hashes, np.frombuffer(b"".join(c for t in taken for c in t), dtype="<u8"))
    assert (ids.lost, ids.twice, ids.unexpected) == (0, 0, 0), ids
    counts: dict[str, int] = defaultdict(int)
    joins: dict[str, int] = defaultdict(int)
    for name in names:
        meta = read_meta(redis_client, ShardKeys(prefix, name))
        assert meta is not None
        for key, value in meta["counts"].items():
            counts[key] += int(value)
        for key, value in meta["joins"].items():
            joins[key] += int(value)
        assert sum(int(o) for o in meta["offsets"].values()) == sum(ends[p] for p in layout[name])
    rows = audit_counts(types, reasons, counts)
    assert [(r.name, r.lost, r.twice) for r in rows if r.lost or r.twice] == []
    # Every impression taken in was learned once (as a positive or a negative), is pending,
    # or was quarantined.
    quarantined = sum(n for k, n in counts.items() if k.startswith("quarantined_"))
    assert 0 <= joins_balance(counts, joins) <= quarantined

    # And the victim's users are answered by its new owner's state.
    final = stamps(redis_client, prefix, names)
    assert final[victim].epoch > published[victim].epoch
    for api in apis:
        for user in users:
            wait_for(partial(answered_by_owner, api, user), "the shard's new version")
