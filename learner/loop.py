"""The learner's core: from one event to training examples, predict, score, learn.

No Kafka here: the consumer hands events in order, with their offsets, and
asks for a `Delta` to publish. Everything this object holds is either in the
core blob, the models, or the write-back structures (joins, seen ids,
aggregates) that publish as deltas, so a learner rebuilt from the committed
state continues exactly as one that never stopped.
"""

import pickle
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from learner import modelcodec
from learner.aggregates import AggregateCache
from learner.dedup import SeenIds
from learner.features import FeatureConfig, features, observe_impression, observe_outcome
from learner.joins import Joins, Pending
from learner.keys import ShardKeys
from learner.metrics import ProgressiveMetrics
from learner.models import build_model
from learner.settings import LearnerSettings
from learner.state import Committed, Delta
from learner.variant import Variant
from stream.events import Event, Impression, Item, Labeled

_OUTCOMES = ("click", "add_to_cart", "purchase")


class Learner:
    """One shard's models and everything needed to keep training them."""

    def __init__(self, settings: LearnerSettings, keys: ShardKeys, cache: AggregateCache) -> None:
        self.settings = settings
        self.keys = keys
        self.cache = cache
        self.feature_config = FeatureConfig(half_life_s=settings.half_life_s)
        self.variants: dict[str, Variant] = {
            name: Variant(
                name, kind, build_model(kind), ProgressiveMetrics(settings.metrics_window)
            )
            for name, kind in settings.variants.items()
        }
        self.joins = Joins(settings.join_window_s, settings.max_pending)
        self.seen = SeenIds(settings.dedup_capacity)
        self.counts: Counter[str] = Counter()
        self.offsets: dict[int, int] = {}
        self.lineage: dict[str, Any] = {}
        self.topology: dict[str, Any] = {}
        """The shard's partitions and the topic's partition count, for the API's routing."""

    # -- processing -------------------------------------------------------

    def prefetch(self, events: Iterable[Event]) -> None:
        """Load the aggregates a batch will touch, in one round trip."""
        keys: list[str] = []
        for event in events:
            if event.type == "labeled":
                continue
            keys.append(self.keys.user(event.user_id))
            keys.append(self.keys.item(event.item_id))
        self.cache.prefetch(keys)

    def process(self, event: Event, partition: int, offset: int) -> None:
        """Learn what one event teaches; record that its offset is done."""
        self.offsets[partition] = offset + 1
        self.counts[f"event_{event.type}"] += 1
        if self.seen.check_and_add(event.event_id):
            self.counts["duplicate_event"] += 1
            return
        at = event.ts.timestamp()
        for example in self.joins.advance(at):
            self._learn(example.features, example.label)
        if isinstance(event, Labeled):
            self._learn(dict(event.features), event.label)
        elif isinstance(event, Impression):
            self._impression(event, at)
        else:
            self._outcome(event.type, event.user_id, event.item_id, event.impression_id, at)

    def skip(self, partition: int, offset: int) -> None:
        """A record that teaches nothing (rejected, quarantined) is still done."""
        self.offsets[partition] = offset + 1

    def _impression(self, event: Impression, at: float) -> None:
        user_key, item_key = self.keys.user(event.user_id), self.keys.item(event.item_id)
        user, item_aggs = self.cache.get(user_key), self.cache.get(item_key)
        x = features(event.context, event.item, user, item_aggs, at, self.feature_config)
        pending = Pending(
            event.impression_id,
            event.user_id,
            event.item_id,
            at,
            x,
            event.item.category,
            event.item.price,
        )
        for example in self.joins.add(pending):
            self._learn(example.features, example.label)
        observe_impression(user, item_aggs, at, self.feature_config)
        self.cache.mark_dirty(user_key)
        self.cache.mark_dirty(item_key)

    def _outcome(
        self, kind: str, user_id: str, item_id: str, impression_id: str | None, at: float
    ) -> None:
        shown = self.joins.item_of(impression_id, user_id, item_id)
        item = Item(price=shown.price, category=shown.category) if shown is not None else None
        user_key, item_key = self.keys.user(user_id), self.keys.item(item_id)
        user, item_aggs = self.cache.get(user_key), self.cache.get(item_key)
        observe_outcome(user, item_aggs, kind, item, at, self.feature_config)
        self.cache.mark_dirty(user_key)
        self.cache.mark_dirty(item_key)
        if kind == self.settings.target:
            example = self.joins.outcome(user_id, item_id, impression_id)
            if example is not None:
                self._learn(example.features, example.label)

    def _learn(self, x: Mapping[str, float | str], y: bool) -> None:
        for variant in self.variants.values():
            variant.learn(dict(x), y)
        self.counts["learned"] += 1

    # -- state ------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """What the API and operators read: per variant facts, offsets, lineage."""
        return {
            "shard": self.keys.shard,
            **self.topology,
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
            "feature_config": {"half_life_s": self.feature_config.half_life_s},
            "variants": {
                name: {
                    "kind": v.kind,
                    "n_learned": v.n_learned,
                    "metrics": v.metrics.report(),
                }
                for name, v in self.variants.items()
            },
            "joins": {**dict(self.joins.counts), "pending": len(self.joins)},
            "counts": dict(self.counts),
            "lineage": self.lineage,
        }

    def delta(self) -> Delta:
        """Everything that changed since the last publish, with the offsets it reflects."""
        core = {
            "variants": {n: (v.kind, v.metrics, v.n_learned) for n, v in self.variants.items()},
            "joins": (self.joins.counts, self.joins.seq, self.joins.watermark),
            "counts": self.counts,
        }
        pending_upserts, pending_deletes = self.joins.delta()
        seen_chunk, seen_drop = self.seen.delta()
        return Delta(
            offsets=dict(self.offsets),
            meta=self.meta(),
            core=pickle.dumps(core, protocol=pickle.HIGHEST_PROTOCOL),
            models={n: modelcodec.dumps(v.model) for n, v in self.variants.items()},
            pending_upserts=pending_upserts,
            pending_deletes=pending_deletes,
            seen_chunk=seen_chunk,
            seen_drop=seen_drop,
            aggregates=self.cache.dirty(),
        )

    def published(self, delta: Delta) -> None:
        """The delta is committed: forget what it carried."""
        self.joins.published()
        self.seen.published(delta.seen_drop)
        self.cache.flushed()

    def restore(self, committed: Committed) -> None:
        """Continue from committed state (a restart, a takeover, a restore)."""
        core = pickle.loads(committed.core)  # our own state, written by a fenced publish
        for name, (kind, metrics, n_learned) in core["variants"].items():
            # A variant dropped from the configuration stays behind; a new one starts fresh.
            if name not in self.variants or name not in committed.models:
                continue
            self.variants[name] = Variant(
                name, kind, modelcodec.loads(committed.models[name]), metrics, n_learned
            )
        counts, seq, watermark = core["joins"]
        self.joins.counts = counts
        self.joins.load(committed.pending, seq, watermark)
        self.seen.load(committed.seen_chunks)
        self.counts = core["counts"]
        self.offsets = dict(committed.offsets)
        self.lineage = dict(committed.meta.get("lineage", {}))
        self.lineage["parent_version"] = committed.version
        self.cache.clear()
