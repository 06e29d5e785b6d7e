"""The bounded-age generations behind both caches: age, model state, reads older than them;
and the response cache's own checks."""

from types import SimpleNamespace
from typing import Any

from api.generations import Generations
from api.respcache import Answer, ResponseCache
from api.schemas import Candidate, Context
from api.telemetry import Metrics
from learner.epoch import Stamp

V1, V2 = Stamp(0, 1), Stamp(0, 2)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_at_most_max_age_after_its_generation_began() -> None:
    clock = Clock()
    cache: Generations[str, int] = Generations(2.0, 10, clock)
    generation = cache.current("main", V1)
    into = cache.admit(generation, read_at=clock.now)
    assert into is not None
    into["a"] = 1
    clock.now += 2.0
    assert cache.current("main", V1).entries == {"a": 1}
    clock.now += 0.001
    assert cache.current("main", V1).entries == {}


def test_another_model_state_never_sees_the_entries() -> None:
    clock = Clock()
    cache: Generations[str, int] = Generations(60.0, 10, clock)
    into = cache.admit(cache.current("main", V1), clock.now)
    assert into is not None
    into["a"] = 1
    assert cache.current("main", V2).entries == {}
    assert cache.current("main", V1).entries == {}  # not brought back either
    assert cache.current("other", V1).entries == {}


def test_a_read_sent_before_the_generation_began_is_not_kept() -> None:
    clock = Clock()
    cache: Generations[str, int] = Generations(1.0, 10, clock)
    read_at = clock.now
    clock.now += 1.5  # the read took long: a new generation began meanwhile
    assert cache.admit(cache.current("main", V1), read_at) is None
    assert cache.admit(cache.current("main", V1), clock.now) is not None


def test_a_full_generation_takes_no_more() -> None:
    clock = Clock()
    cache: Generations[str, int] = Generations(60.0, 2, clock)
    generation = cache.current("main", V1)
    into = cache.admit(generation, clock.now)
    assert into is not None
    into.update({"a": 1, "b": 2})
    assert cache.admit(generation, clock.now) is None


def test_a_cached_answer_is_not_reused_past_the_bound_from_its_oldest_aggregate() -> None:
    clock = Clock()
    cache = ResponseCache(Metrics(), 1.0, 1_000, clock)
    shard: Any = SimpleNamespace(shard="main", stamp=V1)
    variant: Any = SimpleNamespace(name="main")
    key = cache.key(variant, Context(), [Candidate("i1", 1.0, "wool")], None)
    # Computed now from an item read 0.6 s ago (the item cache's generation began then).
    cache.put(shard, key, Answer([0], [0.5], read_at=clock.now - 0.6))
    clock.now += 0.4
    assert cache.get(shard, key) is not None
    clock.now += 0.001
    assert cache.get(shard, key) is None


def test_answers_are_counted_by_their_candidates() -> None:
    clock = Clock()
    cache = ResponseCache(Metrics(), 60.0, 3, clock)
    shard: Any = SimpleNamespace(shard="main", stamp=V1)
    variant: Any = SimpleNamespace(name="main")
    two = [Candidate("i1", 1.0, "wool"), Candidate("i2", 2.0, "wool")]
    first = cache.key(variant, Context(query="a"), two, None)
    second = cache.key(variant, Context(query="b"), two, None)
    cache.put(shard, first, Answer([0, 1], [0.5, 0.4], clock.now))
    cache.put(shard, second, Answer([0, 1], [0.5, 0.4], clock.now))
    assert cache.get(shard, first) is not None
    assert cache.get(shard, second) is None  # 4 candidates would pass the 3 allowed
