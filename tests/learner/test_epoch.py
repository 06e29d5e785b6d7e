"""Epochs: states compare by (epoch, version), the epoch is signed, and a publish on top of
a state its learner did not write or load is refused (tests/api/test_epochs.py runs the
whole path: restores, takeovers, lost writes)."""

from collections.abc import Iterator

import pytest
import redis

from api.loading import load_shard
from headrace.sim.simulator import generate
from learner.epoch import NO_STATE, Stamp, next_epoch
from learner.errors import StateMovedError, UnverifiedStateError
from learner.layout import SIG, read_stamp
from stream.settings import StreamSettings
from tests.api.conftest import SMALL
from tests.learner.harness import InProcessLearner
from tests.support import learner_seal, reader_seal


def test_stamps_order_by_epoch_then_version() -> None:
    assert Stamp(2, 1) > Stamp(1, 99) > Stamp(1, 98) > Stamp(0, 500) > NO_STATE
    assert Stamp.parse(b"7", b"3") == Stamp(7, 3)
    assert Stamp.parse(None, b"3") == Stamp(0, 3)  # written before epochs existed
    assert Stamp.parse(b"7", None) == NO_STATE
    assert str(Stamp(7, 3)) == "epoch 7 version 3" and str(NO_STATE) == "no state"


def test_a_new_epoch_is_above_the_stored_one_whatever_the_clock() -> None:
    assert next_epoch(0, now=1_700_000_000.25) == 1_700_000_000_250
    # A clock behind the stored epoch (another host's, or stepped back): one more.
    assert next_epoch(1_700_000_000_250, now=1_600_000_000.0) == 1_700_000_000_251


@pytest.fixture
def learner(settings: StreamSettings, redis_client: redis.Redis) -> Iterator[InProcessLearner]:
    trained = InProcessLearner(settings, redis_client)
    trained.process(generate(SMALL.model_copy(update={"count": 2_000})))
    yield trained
    trained.close()


@pytest.mark.integration
def test_publishes_continue_the_epoch_the_first_one_starts_it(
    redis_client: redis.Redis, learner: InProcessLearner
) -> None:
    learner.publish()
    first = read_stamp(redis_client, learner.keys)
    assert first.version == 1 and first.epoch > 0
    learner.publish()
    assert read_stamp(redis_client, learner.keys) == Stamp(first.epoch, 2)
    learner.learner.new_epoch = True  # what a takeover sets
    learner.publish()
    third = read_stamp(redis_client, learner.keys)
    assert third.version == 3 and third.epoch > first.epoch
    assert learner.learner.new_epoch is False
    committed = learner.store.load()
    assert committed is not None and committed.stamp == third
    assert committed.meta["epoch"] == third.epoch


@pytest.mark.integration
def test_a_publish_on_top_of_another_state_is_refused(
    redis_client: redis.Redis, learner: InProcessLearner
) -> None:
    learner.publish()
    mine = read_stamp(redis_client, learner.keys)
    learner.publish()
    assert learner.lease.token is not None
    # The learner last wrote `mine`; Redis holds the next version (as if it had lost the
    # learner's memory of it, or something else wrote it): nothing is written.
    with pytest.raises(StateMovedError, match="not the epoch"):
        learner.store.publish(learner.lease.token, learner.learner.delta(), after=mine)
    assert read_stamp(redis_client, learner.keys).version == 2
    got = learner.store.publish(
        learner.lease.token, learner.learner.delta(), after=Stamp(mine.epoch, 2)
    )
    assert got == Stamp(mine.epoch, 3)


@pytest.mark.integration
def test_the_epoch_is_signed(redis_client: redis.Redis, learner: InProcessLearner) -> None:
    learner.publish()
    keys = learner.keys
    state = redis_client.hgetall(keys.state)
    epoch = int(state[b"epoch"])
    served = load_shard(redis_client, keys, None, list, reader_seal())
    assert served is not None and served.stamp == Stamp(epoch, 1)

    # Raised around the learner, to pass an old state off as a newer one: refused.
    redis_client.hset(keys.state, "epoch", str(epoch + 10**6))
    with pytest.raises(UnverifiedStateError, match="'epoch' was changed after it was signed"):
        load_shard(redis_client, keys, None, list, reader_seal())

    # A state signed before epochs existed reads as epoch 0, and an epoch field added to it
    # is not read: the signature does not cover it.
    fields = {k.decode(): v for k, v in state.items() if k not in (b"epoch", SIG.encode())}
    fields[SIG] = learner_seal().seal(keys, 1, fields)
    redis_client.delete(keys.state)
    redis_client.hset(keys.state, mapping=fields)
    old = load_shard(redis_client, keys, None, list, reader_seal())
    assert old is not None and old.stamp == Stamp(0, 1)
    redis_client.hset(keys.state, "epoch", str(epoch + 10**6))
    planted = load_shard(redis_client, keys, None, list, reader_seal())
    assert planted is not None and planted.stamp == Stamp(0, 1)
    # ... and the served newer state stays: what was signed decides, not the field.
    assert load_shard(redis_client, keys, served, list, reader_seal()) is served
