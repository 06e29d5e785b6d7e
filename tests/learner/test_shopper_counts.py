"""What the learner counts of each shopper beside the features: the purchases their
impressions were expected to bring, as the shard's first variant served them once it has
learned a few hundred examples, and the category each query asked for, as the store's
pages answered it."""

from collections import defaultdict

import pytest
import redis

from headrace.sim.simulator import SimulatorConfig, generate
from learner.aggregates import AggregateCache
from learner.layout import ShardKeys
from learner.loop import EXPECTED_FROM, Learner
from learner.settings import LearnerSettings
from learner.taste import TYPICAL_BUY
from stream.events import Impression, Rejection, parse_event
from stream.settings import StreamSettings

RECORDS = list(generate(SimulatorConfig(seed=9, count=3_000, n_users=40, n_items=60)))


def test_expected_purchases_are_what_the_first_variant_served(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    keys = ShardKeys(settings.key_prefix, "main")
    variants = {"first": "logreg", "second": "tree"}
    core = Learner(LearnerSettings(variants=variants), keys, AggregateCache(redis_client))
    events = [e for e in (parse_event(r.value) for r in RECORDS) if not isinstance(e, Rejection)]
    core.prefetch(events)
    served: dict[tuple[str, str], float] = defaultdict(float)
    asked: dict[tuple[str, str], float] = defaultdict(float)
    shown: dict[tuple[str, str], float] = defaultdict(float)
    young = 0
    for offset, event in enumerate(events):
        main = None
        learned = core.variants["first"].n_learned
        if isinstance(event, Impression):
            main = core.store.main_category(event.context.query.lower())
        core.process(event, 0, offset)
        if isinstance(event, Impression):
            entry = core.joins.item_of(event.impression_id, event.user_id, event.item_id)
            assert entry is not None
            # A young model's chance is not counted: a typical impression's instead.
            counted = entry.scores["first"] if learned >= EXPECTED_FROM else TYPICAL_BUY
            young += learned < EXPECTED_FROM
            served[event.user_id, event.item.category] += counted
            if event.context.query:
                asked[event.user_id, main or event.item.category] += 1.0
                shown[event.user_id, event.item.category] += 1.0
    assert len(served) > 50
    # Both kinds: the untrained model's first chances (0.5) would be far from typical.
    assert 0 < young <= EXPECTED_FROM
    for (user_id, category), expected in served.items():
        user = core.cache.get(keys.user(user_id))
        assert user["ex:" + category] == pytest.approx(expected, rel=1e-12)
    for (user_id, category), n in asked.items():
        assert core.cache.get(keys.user(user_id))["qi:" + category] == n
    # Counted under the query's category, not the item's: a search page shows others too.
    assert sum(asked.values()) > 1_000
    assert asked != shown
