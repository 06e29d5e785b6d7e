"""Whole answers cached per worker for requests whose user has no history.

A user without aggregates in Redis (anonymous, or new) gets the same scores as every
other such user for the same context and candidates: the answer depends only on the
model state, the variant, the context, the candidates and the items' aggregates. The
scores and the order of such an answer are kept, keyed by shard, variant, context,
candidates and top_k, in a generation of the model state that computed them
(`api.generations`): an answer of another state is never reused, and none is reused
more than `max_age_s` after the oldest aggregate it was computed from was read. Each reuse
gets its own request and impression ids. The shadow variant does not score a reused
answer (there are no features to score).
"""

from collections.abc import Callable
from dataclasses import dataclass

from api.generations import Generations
from api.loading import LoadedVariant, ShardModel
from api.schemas import Candidate, Context
from api.telemetry import Metrics

Key = tuple[str, Context, tuple[Candidate, ...], int | None]


@dataclass(frozen=True, slots=True)
class Answer:
    order: list[int]
    """Candidate indices, as returned."""
    scores: list[float]
    """Each candidate's score, in candidate order."""
    read_at: float
    """When the oldest aggregate it was computed from was read."""
    rescored: list[bool] | None = None
    """A cascade's answer: whether its second stage re-scored each candidate, in candidate
    order. None when one variant scored them all."""


class ResponseCache:
    def __init__(
        self, metrics: Metrics, max_age_s: float, max_candidates: int, clock: Callable[[], float]
    ) -> None:
        self.clock = clock
        self._generations: Generations[Key, Answer] = Generations(max_age_s, max_candidates, clock)
        self._hits = metrics.cache.labels("response", "hit")
        self._misses = metrics.cache.labels("response", "miss")

    @staticmethod
    def key(
        variant: LoadedVariant, context: Context, candidates: list[Candidate], top_k: int | None
    ) -> Key:
        # Context and Candidate are frozen Structs: hashed and compared field by field in C.
        return (variant.name, context, tuple(candidates), top_k)

    def get(self, shard: ShardModel, key: Key) -> Answer | None:
        generations = self._generations
        found = generations.current(shard.shard, shard.stamp).entries.get(key)
        # Its aggregates may come from the item cache, older than the answer itself: the
        # bound counts from them (one check a request, unlike the item cache's).
        if found is not None and self.clock() - found.read_at > generations.max_age_s:
            found = None
        (self._misses if found is None else self._hits).inc()
        return found

    def put(self, shard: ShardModel, key: Key, answer: Answer) -> None:
        """Keep `answer` (for as long as its oldest aggregate allows). A generation holds
        at most `max_candidates` candidates' answers: the key keeps the request's
        candidates alive, about 0.3 KB each."""
        generation = self._generations.current(shard.shard, shard.stamp)
        weight = len(key[2])
        if generation.size + weight <= self._generations.max_entries:
            generation.entries[key] = answer
            generation.size += weight
