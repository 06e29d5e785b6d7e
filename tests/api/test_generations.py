"""The bounded-age generations behind both caches: age, model state, reads older than them."""

from api.generations import Generations
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
