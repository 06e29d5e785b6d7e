"""What every failover test does around its fault: a stream fed while the API is asked,
the lag drained afterwards, and the account that nothing was lost or learned twice."""

from collections.abc import Iterator, Sequence
from functools import partial
from itertools import islice

import httpx
import redis

from headrace.sim.simulator import SimRecord, SimulatorConfig, generate
from stream.settings import StreamSettings
from tests.api.helpers import ApiProcess, recent_config
from tests.failover.traffic import Client, Feed
from tests.learner.harness import caught_up, end_offsets, send, store
from tests.support import wait_for

FIRST = 3_000
"""Records sent before the learner starts; the rest are fed while the fault happens."""
WAIT_S = 240.0
"""Generous: three brokers, learners and API replicas share the machine with everything else."""
RATE = 1_500
"""Records a second the feed publishes: a steady stream, with CPU left for the servers."""


def stream(seed: int) -> SimulatorConfig:
    """A failover test's stream: 40,000 records ending about now."""
    return recent_config(seed=seed, count=40_000, n_users=400, n_items=150)


def first_records(cluster: StreamSettings, config: SimulatorConfig) -> Iterator[SimRecord]:
    """Send the stream's FIRST records; the rest, for the feed."""
    records = generate(config)
    send(cluster, islice(records, FIRST))
    return records


def ready(url: str) -> bool:
    return httpx.get(f"{url}/ready").status_code == 200


def start_traffic(
    cluster: StreamSettings,
    cluster_redis: redis.Redis,
    apis: Sequence[ApiProcess],
    clients: Sequence[Client],
    feed: Feed,
) -> None:
    """Once every API replica is ready, its client asks and the feed publishes, until the
    learner has published a few versions."""
    for api in apis:
        api.wait_listening(60)
        wait_for(partial(ready, api.url), "ready", WAIT_S)
    for client in clients:
        client.start()
    feed.start()
    shard = store(cluster_redis, cluster)
    wait_for(lambda: shard.version() > 5, "the learner publishing", WAIT_S)


def drain(cluster: StreamSettings, cluster_redis: redis.Redis, feed: Feed) -> dict[int, int]:
    """Wait for the feed to end and the learner to commit up to the end of every partition;
    return those ends."""
    feed.join(WAIT_S)
    ends = end_offsets(cluster)
    wait_for(lambda: caught_up(cluster_redis, cluster, ends), "the lag to drain", WAIT_S)
    return ends


def assert_exactly_once(
    cluster: StreamSettings,
    cluster_redis: redis.Redis,
    config: SimulatorConfig,
    feed: Feed,
    ends: dict[int, int],
) -> None:
    sent = FIRST + feed.sent
    assert sent == config.count
    # Kafka holds each record once (the idempotent producer's retries wrote none twice)...
    assert sum(ends.values()) == sent
    meta = store(cluster_redis, cluster).load_meta()
    assert meta is not None
    counts = meta["counts"]
    # ... and the committed state took each in once, up to Kafka's end offsets.
    assert {int(p): o for p, o in meta["offsets"].items()} == ends
    assert sum(v for k, v in counts.items() if k.startswith("event_")) == sent
    assert counts.get("duplicate_event", 0) == 0


def assert_served(clients: Sequence[Client]) -> None:
    """Every client was answered, never with a 5xx."""
    for client in clients:
        assert client.answers, "no /predict answered"
        assert client.server_errors() == []
