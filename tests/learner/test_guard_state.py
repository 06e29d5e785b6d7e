"""Guard state in the committed state: resumed by the same code and settings, else afresh."""

import redis

from guards.persisted import STATE_VERSION
from guards.settings import GuardSettings
from headrace.sim.simulator import SimulatorConfig, generate
from learner.aggregates import AggregateCache
from learner.layout import ShardKeys
from learner.loop import Learner
from learner.settings import LearnerSettings
from learner.state import Committed
from stream.events import Rejection, parse_event
from stream.settings import StreamSettings

RECORDS = list(generate(SimulatorConfig(seed=8, count=6_000, n_users=150, n_items=60)))


def learner(settings: StreamSettings, client: redis.Redis, guards: GuardSettings) -> Learner:
    keys = ShardKeys(settings.key_prefix, "main")
    return Learner(LearnerSettings(join_window_s=60), keys, AggregateCache(client), guards)


def feed(core: Learner, start: int, stop: int) -> None:
    events = [parse_event(r.value) for r in RECORDS[start:stop]]
    ok = [(i, e) for i, e in enumerate(events, start) if not isinstance(e, Rejection)]
    core.prefetch(e for _, e in ok)
    for offset, event in ok:
        assert not isinstance(event, Rejection)
        core.process(event, 0, offset)


def committed(core: Learner) -> Committed:
    delta = core.delta()
    return Committed(1, delta.offsets, delta.meta, delta.core, delta.models, {}, [])


def test_the_same_code_and_settings_resume_the_guards_as_they_were(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    first = learner(settings, redis_client, GuardSettings())
    feed(first, 0, 4_000)
    assert first.monitors["main"].n > 0
    second = learner(settings, redis_client, GuardSettings())
    second.restore(committed(first))
    assert second.monitors["main"].n == first.monitors["main"].n
    assert second.fraud is not None and first.fraud is not None
    assert second.fraud.vocab_impressions == first.fraud.vocab_impressions > 0
    feed(second, 4_000, 6_000)


def test_other_guard_settings_start_the_guards_afresh_keeping_the_alert_count(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    first = learner(settings, redis_client, GuardSettings())
    feed(first, 0, 4_000)
    stricter = GuardSettings(drift_min_increase=0.5, fraud_rate_burst=50.0)
    second = learner(settings, redis_client, stricter)
    second.restore(committed(first))
    monitor = second.monitors["main"]
    assert monitor.settings == stricter  # the running configuration, not the committed one
    assert monitor.n == first.monitors["main"].n  # alert ids never repeat
    assert second.fraud is not None and second.fraud.settings == stricter
    assert second.fraud.vocab_impressions == 0
    feed(second, 4_000, 6_000)
    assert monitor.n > first.monitors["main"].n


def test_guard_state_written_before_versioning_is_not_resumed_and_learning_goes_on(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    # Committed by a learner whose guards had another layout (an upgrade): resuming it
    # crashed the new code on its first update.
    first = learner(settings, redis_client, GuardSettings())
    feed(first, 0, 4_000)
    assert first.fraud is not None
    for guard in [first.fraud, *first.monitors.values(), *first.deciders.values()]:
        delattr(guard, "state_version")
    second = learner(settings, redis_client, GuardSettings())
    second.restore(committed(first))
    assert second.fraud is not None
    for guard in [second.fraud, *second.monitors.values(), *second.deciders.values()]:
        assert getattr(guard, "state_version", None) == STATE_VERSION
    feed(second, 4_000, 6_000)
    assert second.counts["learned"] > first.counts["learned"]
