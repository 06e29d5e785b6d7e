"""Item aggregates cached per worker, for at most `HEADRACE_CACHE_MAX_AGE_S` seconds.

A request reads from Redis only its user's hash and the items the cache lacks; the rest
come from what an earlier request read, as parsed columns' values (no packing, no reply
to parse). The bound holds by construction (`api.generations`): no answer uses item
aggregates read more than `max_age_s` before its request arrived, nor read while another
model state was served. Features are still computed at the request's own time, so the time decay of
cached counts is exact; only what the learner wrote since the read is missing.
"""

from collections.abc import Callable, Sequence

from api.generations import Generations
from api.loading import ShardModel
from api.online import Aggregates, OnlineAggregates
from api.telemetry import Metrics
from learner.features import ItemColumns

ItemRow = tuple[float | None, float, float, float]
"""An item's time, impressions, clicks and purchases (`learner.features.ITEM_FIELDS`)."""


class ItemCache:
    """Reads through `online`, keeping what it read of each item for a bounded time."""

    def __init__(
        self,
        online: OnlineAggregates,
        metrics: Metrics,
        max_age_s: float,
        max_items: int,
        clock: Callable[[], float],
    ) -> None:
        self.online = online
        self.clock = clock
        self._generations: Generations[str, ItemRow] = Generations(max_age_s, max_items, clock)
        self._hits = metrics.cache.labels("item", "hit")
        self._misses = metrics.cache.labels("item", "miss")

    async def fetch(
        self, shard: ShardModel, user_id: str, item_ids: Sequence[str]
    ) -> tuple[tuple[Aggregates, ItemColumns] | None, float]:
        """What `OnlineAggregates.fetch` gives, and when the oldest of it was read."""
        generation = self._generations.current(shard.shard, shard.stamp)
        cached = list(map(generation.entries.get, item_ids))
        missing = [item_id for item_id, row in zip(item_ids, cached, strict=True) if row is None]
        read_at = self.clock()
        fetched = await self.online.fetch(shard.keys, user_id, missing)
        if fetched is None:
            return None, read_at
        self._hits.inc(len(item_ids) - len(missing))
        self._misses.inc(len(missing))
        user, found = fetched
        if not missing:
            rows: list[ItemRow] = cached  # type: ignore[assignment]
            return (user, _columns(rows)), generation.since
        new = list(zip(found.time, found.impressions, found.clicks, found.purchases, strict=True))
        into = self._generations.admit(generation, read_at)
        if into is not None:
            into.update(zip(missing, new, strict=True))
        if len(missing) == len(item_ids):
            return (user, found), read_at
        fresh = iter(new)
        rows = [row if row is not None else next(fresh) for row in cached]
        return (user, _columns(rows)), generation.since


def _columns(rows: list[ItemRow]) -> ItemColumns:
    time, impressions, clicks, purchases = map(list, zip(*rows, strict=True))
    return ItemColumns(time, impressions, clicks, purchases)
