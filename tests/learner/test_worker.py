"""The learner's loop on in-process collaborators: what it sends aside, publishes and resumes."""

import time

import pytest
import redis

from headrace.sim.simulator import SimulatorConfig, generate
from learner.errors import FencedError
from learner.layout import read_offsets, read_stamp
from learner.lease import Lease
from stream.settings import StreamSettings
from tests.learner.harness import InProcessLearner

pytestmark = pytest.mark.integration

STREAM = SimulatorConfig(seed=12, count=3_000, n_users=200, n_items=80, malformed_rate=0.05)


def test_bad_records_go_to_the_dead_letters_and_offsets_cover_everything(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    records = list(generate(STREAM))
    broken = sum(r.type == "malformed" for r in records)
    assert broken > 0
    learner = InProcessLearner(settings, redis_client)
    learner.process(records)
    assert learner.publish() == 1
    dead = learner.dead.records
    # Every malformed record, and nothing else; each with its reason and where it came from.
    assert len(dead) == broken
    for record, headers in dead:
        names = dict(headers)
        assert names["reason"] in {b"invalid_json", b"unknown_type", b"schema", b"too_large"}
        assert names["source_offset"] == str(record.offset()).encode()
    assert sum(read_offsets(redis_client, learner.keys).values()) == len(records)
    meta = learner.learner.meta()
    assert sum(n for k, n in meta["counts"].items() if k.startswith("rejected_")) == broken
    assert meta["counts"].get("misrouted", 0) == 0  # the partitions Kafka's partitioner gives


def test_a_second_learner_resumes_from_the_published_offsets(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    records = list(generate(STREAM.model_copy(update={"malformed_rate": 0.0})))
    first = InProcessLearner(settings, redis_client)
    first.process(records[:2_000])
    first.publish()
    learned = first.learner.counts["learned"]
    before = read_stamp(redis_client, first.keys)
    first.close()

    second = InProcessLearner(settings, redis_client)
    assert second.learner.counts["learned"] == learned
    # Taking the shard over publishes what it found at once, under a new epoch.
    taken = read_stamp(redis_client, second.keys)
    assert taken.version == before.version + 1 and taken.epoch > before.epoch
    second.reader.feed(records[:2_000])  # already published: not read again
    assert not second.reader.behind()
    second.process(records[2_000:])
    assert second.publish() == taken.version + 1
    assert sum(read_offsets(redis_client, second.keys).values()) == len(records)
    assert second.learner.counts["event_impression"] == sum(r.type == "impression" for r in records)


def test_a_learner_that_lost_its_lease_in_a_pause_sends_nothing_aside(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    records = list(generate(STREAM))
    first, rest = records[:1_000], records[1_000:]
    assert any(r.type == "malformed" for r in rest)
    learner = InProcessLearner(settings, redis_client)
    learner.process(first)
    learner.publish()
    sent = len(learner.dead.records)
    # A pause longer than the lease (a slow snapshot on a starved machine): it expired and
    # a standby took the shard.
    redis_client.delete(learner.keys.lease)
    assert Lease(redis_client, learner.keys, 60_000, "standby").try_acquire()
    learner.worker._last_renew = time.monotonic() - 61
    learner.reader.feed(rest)
    with pytest.raises(FencedError):
        learner.worker.step()
    assert len(learner.dead.records) == sent
    assert len(learner.quarantine.records) == 0
