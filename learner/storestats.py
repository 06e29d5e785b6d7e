"""Store-wide statistics of what the storefront shows, read off the impressions: which
categories each query's pages show, and what each category's items typically cost.

A storefront's own search already knows what a query asks for: most of what it shows
for "budget yarn" is acrylic, most of what it shows for "dpn 2.5mm" needles. The share of
a query's impressions that are of an item's category says how well the item answers the
query, from the first pages on and without a label (a one-hot weight per query and
category learns it only from purchases, one in twenty impressions). The mean log price of
a category's impressions says whether an item is dear for its kind.

Counts decay with the aggregates' half-life. Both features are ratios, so instead of
decaying every count at each event, each new impression weighs 2^((t - t0) / half-life)
(t the latest event time seen, so an older event weighs no more than the newest): the
same ratios, one update an impression. The table keeps the most frequent queries only
(at most twice `max_queries` between prunes), so a real store's long tail of queries stays
bounded; a query not in it has no share (0.0).

The learner updates it and publishes it in the meta of every version (`dump`), so the API
scores with the table of the model it serves: no extra read per request, and snapshots,
restores and exactly-once publishing carry it with the rest of the state.
"""

from collections.abc import Mapping
from typing import Any

# Past this exponent the weights are rescaled (2^30 keeps every weight and sum far from
# the floats' range and precision limits).
_RESCALE_EXPONENT = 30.0


class StoreStats:
    """Decayed counts of impressions per query and category, and of log prices per
    category."""

    def __init__(self, half_life_s: float, max_queries: int = 200) -> None:
        self.half_life_s = half_life_s
        self.max_queries = max_queries
        self.t0: float | None = None
        """Event time at which an impression weighs 1."""
        self.now: float | None = None
        """The latest event time seen."""
        self.queries: dict[str, tuple[list[float], dict[str, float]]] = {}
        """Lowered query → ([weight of all its impressions], weight per category)."""
        self.prices: dict[str, list[float]] = {}
        """Category → [weighted sum of log1p(price), weight]."""

    def observe(self, query: str, category: str, log_price: float, at: float) -> None:
        """Count an impression of an item of `category` (log1p of its price), shown for
        `query` (none: a home page), after its features were taken."""
        weight = self._weight(at)
        if query:
            key = query.lower()
            found = self.queries.get(key)
            if found is None:
                # Pruned before the new query joins, so it has until the next prune to
                # become one of the most frequent.
                if len(self.queries) >= 2 * self.max_queries:
                    self._prune()
                found = self.queries[key] = ([0.0], {})
            total, counts = found
            total[0] += weight
            counts[category] = counts.get(category, 0.0) + weight
        sums = self.prices.get(category)
        if sums is None:
            sums = self.prices[category] = [0.0, 0.0]
        sums[0] += weight * log_price
        sums[1] += weight

    def share(self, query: str, category: str) -> float:
        """The share of a (lowered) query's impressions that are of `category`; 0.0 for a
        query not in the table."""
        found = self.queries.get(query) if query else None
        if found is None:
            return 0.0
        return found[1].get(category, 0.0) / found[0][0]

    def main_category(self, query: str) -> str | None:
        """The category most of a (lowered) query's impressions are of (ties: the first
        counted), None for a query not in the table: what the query asks for."""
        found = self.queries.get(query) if query else None
        if found is None or not found[1]:
            return None
        counts = found[1]
        return max(counts, key=counts.__getitem__)

    def mean_log_price(self, category: str) -> float | None:
        """The mean log1p(price) of the category's impressions, None before the first."""
        sums = self.prices.get(category)
        return None if sums is None else sums[0] / sums[1]

    def _weight(self, at: float) -> float:
        now = at if self.now is None else max(self.now, at)
        self.now = now
        if self.t0 is None:
            self.t0 = now
        exponent = (now - self.t0) / self.half_life_s
        if exponent > _RESCALE_EXPONENT:
            scale = 0.5**exponent
            for total, counts in self.queries.values():
                total[0] *= scale
                for key in counts:
                    counts[key] *= scale
            for sums in self.prices.values():
                sums[0] *= scale
                sums[1] *= scale
            self.t0, exponent = now, 0.0
        return float(2.0**exponent)

    def _prune(self) -> None:
        """Keep the `max_queries` most frequent queries (ties: by name, so a restored
        learner keeps the same ones)."""
        ranked = sorted(self.queries.items(), key=lambda kv: (-kv[1][0][0], kv[0]))
        self.queries = dict(ranked[: self.max_queries])

    def dump(self) -> dict[str, Any]:
        """The table as JSON-ready values (floats read back exactly)."""
        return {
            "t0": self.t0,
            "now": self.now,
            "queries": {q: [total[0], dict(counts)] for q, (total, counts) in self.queries.items()},
            "prices": {c: list(sums) for c, sums in self.prices.items()},
        }

    @classmethod
    def load(
        cls, raw: Mapping[str, Any] | None, half_life_s: float, max_queries: int = 200
    ) -> "StoreStats":
        """The table `dump` wrote (None or {}: an empty one, as a state from before it)."""
        stats = cls(half_life_s, max_queries)
        if not raw:
            return stats
        stats.t0 = _optional_float(raw.get("t0"))
        stats.now = _optional_float(raw.get("now"))
        stats.queries = {
            str(q): ([float(total)], {str(c): float(w) for c, w in counts.items()})
            for q, (total, counts) in raw.get("queries", {}).items()
        }
        stats.prices = {str(c): [float(s), float(w)] for c, (s, w) in raw.get("prices", {}).items()}
        return stats


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
