"""The learner's core: from one event to training examples, predict, score, learn.

No Kafka here: the consumer hands events in order, with their offsets, and
asks for a `Delta` to publish. Everything this object holds is either in the
core blob, the models, or the write-back structures (joins, seen ids,
aggregates) that publish as deltas, so a learner rebuilt from the committed
state continues exactly as one that never stopped.
"""

import logging
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from guards.alerts import Alert
from guards.drift import PERFORMANCE_SIGNALS, DriftMonitor
from guards.fraud import FraudGuard
from guards.persisted import resumable
from guards.rollback import RollbackDecider
from guards.settings import GuardSettings
from learner import modelcodec
from learner.aggregates import AggregateCache
from learner.averaging import WeightAverage
from learner.counters import BOUGHT_AFTER, BOUGHT_WITHIN, QUARANTINED
from learner.dedup import SeenIds
from learner.features import FeatureConfig, features, observe_impression, observe_outcome
from learner.feedback import DelayedFeedback
from learner.history import HistoryRecorder
from learner.joins import Joins, Pending, encode_features
from learner.layout import ShardKeys
from learner.metrics import ProgressiveMetrics, log_loss
from learner.models import build_model
from learner.progressive import predictor
from learner.settings import LearnerSettings
from learner.state import Committed, Delta
from learner.storestats import StoreStats
from learner.variant import Variant, p_true_of
from stream.events import EVENT_TYPES, Event, Impression, Item, Labeled, Verdict

log = logging.getLogger("headrace.learner")

_EVENT_COUNTER = {kind: f"event_{kind}" for kind in EVENT_TYPES}

EXPECTED_FROM = 500
"""Examples the shard's first variant learns before the chances it serves count in the
shoppers' expected purchases. An untrained model serves 0.5, ten typical impressions'
worth, and its first few hundred examples serve far above the purchase rate; the counts
are never decayed, so the shoppers of a learner's first minutes read for good as shown
more than they were (docs/learner.md, "A young model's chances")."""


class Learner:
    """One shard's models and everything needed to keep training them."""

    def __init__(
        self,
        settings: LearnerSettings,
        keys: ShardKeys,
        cache: AggregateCache,
        guards: GuardSettings | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.cache = cache
        self.feature_config = FeatureConfig(half_life_s=settings.half_life_s)
        self.store = StoreStats(settings.half_life_s, settings.store_queries)
        """Store-wide counts the features read (published in the meta for the API)."""
        self.variants: dict[str, Variant] = {
            name: Variant(
                name,
                kind,
                build_model(kind),
                ProgressiveMetrics(settings.metrics_window),
                average=WeightAverage(settings.served_average) if settings.served_average else None,
            )
            for name, kind in settings.variants.items()
        }
        self.feedback = DelayedFeedback(settings.delayed_feedback)
        self.joins = Joins(
            settings.join_window_s,
            settings.max_pending,
            settings.guard_delay_s,
            settings.elapsed_s if self.feedback.learns_at_elapsed else None,
        )
        self.seen = SeenIds(settings.dedup_capacity)
        self.counts: Counter[str] = Counter()
        self.offsets: dict[int, int] = {}
        self.partition_time: dict[int, float] = {}
        """Latest event time seen on each partition."""
        self.lineage: dict[str, Any] = {}
        """Where this line of versions comes from: a restore or a rollback, and why."""
        self.version = 0
        """The last version this learner committed (or restored)."""
        self.new_epoch = False
        """The next publish starts a new epoch (learner/epoch.py): set by a rollback, and by
        the process when it takes the shard over."""
        self.topology: dict[str, Any] = {}
        """The shard's partitions and the topic's partition count, for the API's routing."""
        g = guards if guards is not None and guards.guards_enabled else None
        self.fraud = FraudGuard(g) if g is not None and g.fraud_enabled else None
        self.monitors: dict[str, DriftMonitor] = {}
        self.deciders: dict[str, RollbackDecider] = {}
        if g is not None:
            for name in self.variants:
                if g.drift_enabled:
                    self.monitors[name] = DriftMonitor(keys.shard, name, g)
                if g.rollback_enabled:
                    self.deciders[name] = RollbackDecider(g)
        self.shadows: dict[str, Any] = {}
        """Per variant, the last-known-good model, scored on every example (never learning);
        set with `set_shadows`."""
        self._shadow_predict: dict[str, Callable[[Mapping[str, Any]], dict[Any, float]]] = {}
        self.alerts: list[Alert] = []
        """Raised since the last publish; published with the state that raised them."""
        self.ends: dict[int, int] = {}
        """Each assigned partition's end offset, as the consumer last learned it: a
        partition read short of its end holds the join's watermark back."""
        self.lag: dict[int, int] = {}
        """Records behind the end of each partition, as the consumer last saw it."""
        self.history = HistoryRecorder(settings.history_every_ms / 1000)

    # -- processing -------------------------------------------------------

    def prefetch(self, events: Iterable[Event]) -> None:
        """Load the aggregates a batch will touch, in one round trip."""
        keys: list[str] = []
        for event in events:
            keys.append(self.keys.user(event.user_id))
            if event.type == "labeled":
                continue
            keys.append(self.keys.item(event.item_id))
        self.cache.prefetch(keys)

    def process(self, event: Event, partition: int, offset: int) -> Verdict | None:
        """Learn what one event teaches; record that its offset is done.

        Returns the fraud guard's verdict when the event is quarantined (not learned).
        """
        self.offsets[partition] = offset + 1
        self.counts[_EVENT_COUNTER[event.type]] += 1
        if self.seen.check_and_add(event.event_id):
            self.counts["duplicate_event"] += 1
            return None
        at = event.ts.timestamp()
        if self.fraud is not None:
            user_key = self.keys.user(event.user_id)
            # Marked dirty whatever the verdict: a ban is written by the event it blocks.
            verdict = self.fraud.check(event, self.cache.get(user_key), at)
            self.cache.mark_dirty(user_key)
            if verdict is not None:
                self.counts[f"{QUARANTINED}{verdict.rule}"] += 1
                return verdict
        joins = self.joins
        for closed in joins.advance(self._watermark(partition, at)):
            self._close(closed)
        if joins.elapsed_s is not None:
            for entry in joins.to_sample():
                self._sample(entry)
        if joins.guard_s is not None:
            for entry in joins.to_guard():
                self._guard_early(entry)
        if isinstance(event, Labeled):
            self._labeled(dict(event.features), event.label, at)
        elif isinstance(event, Impression):
            self._impression(event, at)
        else:
            self._outcome(event.type, event.user_id, event.item_id, event.impression_id, at)
        return None

    def _watermark(self, partition: int, at: float) -> float:
        """Event time below which no partition of the shard can still bring an impression.

        The join closes windows by it, so it must not depend on how the consumer
        interleaves partitions: one read ahead of the others (a consumer catching up on a
        backlog reads them in long runs) must not close the impressions of one still
        behind. A partition with unread records (`ends`, from the consumer) holds the
        watermark at its latest event time, or at -inf before its first record. A
        partition read to its end brings only new events, which carry later times, so
        it holds nothing back beyond `watermark_idle_s` behind the newest partition: a
        quiet partition does not stall the others.
        """
        times = self.partition_time
        if at > times.get(partition, float("-inf")):
            times[partition] = at
        offsets, behind = self.offsets, float("inf")
        for p, end in self.ends.items():
            if offsets.get(p, 0) < end:
                t = times.get(p, float("-inf"))
                if t < behind:
                    behind = t
        newest = max(times.values())
        idle = newest - self.settings.watermark_idle_s
        caught_up = max(min(times.values()), idle)
        return min(behind, caught_up)

    def skip(self, partition: int, offset: int) -> None:
        """A record that teaches nothing (rejected, quarantined) is still done."""
        self.offsets[partition] = offset + 1

    def _impression(self, event: Impression, at: float) -> None:
        user_key, item_key = self.keys.user(event.user_id), self.keys.item(event.item_id)
        user, item_aggs = self.cache.get(user_key), self.cache.get(item_key)
        first = next(iter(self.variants.values()), None)
        counts_served = first is not None and first.n_learned >= EXPECTED_FROM
        x = features(
            event.context, event.item, user, item_aggs, at, self.feature_config, self.store
        )
        # What each variant says now is what users were served: the metrics score it when
        # the label is final. A method that learns at once predicts in the same step.
        feedback = self.feedback
        if feedback.learns_at_impression:
            scores = {n: v.learn(x, False, feedback.negative) for n, v in self.variants.items()}
            self.counts["trained"] += 1
        else:
            scores = {n: v.predict(x) for n, v in self.variants.items()}
        pending = Pending(
            event.impression_id,
            event.user_id,
            event.item_id,
            at,
            encode_features(x),
            event.item.category,
            event.item.price,
            scores,
        )
        for closed in self.joins.add(pending):
            self._close(closed)
        # The shopper's counts take the category the query asks for, as the store's pages
        # answered it before this one, and the chance the shard's first variant (its
        # default answer) served, once it has learned EXPECTED_FROM examples.
        query = event.context.query.lower()
        observe_impression(
            user,
            item_aggs,
            event.item,
            at,
            self.feature_config,
            event.context,
            self.store.main_category(query),
            next(iter(scores.values()), None) if counts_served else None,
        )
        self.store.observe(event.context.query, event.item.category, float(x["log_price"]), at)
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
        if kind != self.settings.target:
            return
        state, entry = self.joins.outcome(user_id, item_id, impression_id, at)
        if entry is None:
            return
        feedback = self.feedback
        if feedback.learns_at_elapsed:
            # A purchase within the elapsed time is learned with the impression, then; a
            # later one now, as the method's duplicate positive.
            elapsed_s = self.settings.elapsed_s
            within = state == "bought" and at - entry.ts <= elapsed_s and not entry.sampled
            self.counts[BOUGHT_WITHIN if at - entry.ts <= elapsed_s else BOUGHT_AFTER] += 1
            if not within:
                self._train_positive(entry)
        # A purchase inside the window waits for the close, unless the method learns it
        # now; one after the window is a correction either way.
        elif state == "late" or feedback.learns_at_impression:
            self._train_positive(entry)
        if state == "late":
            self.joins.drop_features(entry)

    def _train_positive(self, entry: Pending) -> None:
        """Learn a held impression as a positive, weighted by what each variant served."""
        x = entry.x()
        after = self._after_elapsed()
        for name, variant in self.variants.items():
            variant.train(x, True, self.feedback.positive(self._served(entry, name, x), after))
        self.counts["trained"] += 1

    def _sample(self, entry: Pending) -> None:
        """Learn an impression with the label known `elapsed_s` after it ("esdfm")."""
        x = entry.x()
        bought = entry.bought_by(self.settings.elapsed_s)
        feedback, after = self.feedback, self._after_elapsed()
        for name, variant in self.variants.items():
            f = self._served(entry, name, x)
            weight = feedback.positive(f, after) if bought else feedback.negative(f, after)
            variant.train(x, bought, weight)
        self.counts["trained"] += 1

    def _after_elapsed(self) -> float:
        """The share of purchases that came after the elapsed time, with one of each kind
        counted in advance so the first ones do not make it 0 or 1 (1 for "fnw", whose
        elapsed time is 0)."""
        if not self.feedback.learns_at_elapsed:
            return 1.0
        counts = self.counts
        after = counts[BOUGHT_AFTER]
        return (after + 1) / (counts[BOUGHT_WITHIN] + after + 2)

    def _close(self, entry: Pending) -> None:
        """An impression's label is final: learn it if the method learns now, and score
        the prediction that was served for it (the guards too, unless they judged it
        already)."""
        x = entry.x()
        y = entry.closed == "positive"
        learn = self.feedback.learns_at_close
        guard = not entry.guarded
        if self.feedback.learns_at_elapsed and not entry.sampled:
            # Closed before the watermark passed its elapsed time (it passed both at once,
            # or the buffer was full): learned now, with the label it had then.
            entry.sampled = True
            self._sample(entry)
        for name, variant in self.variants.items():
            served = self._served(entry, name, x)
            if learn:
                variant.train(x, y)
            variant.score(y, served)
            if guard:
                self._guard(name, variant, x, y, served, entry.ts)
        if learn:
            self.counts["trained"] += 1
        self.counts["learned"] += 1

    def _guard_early(self, entry: Pending) -> None:
        """The guards judge what was served against the label known `guard_delay_s` after
        it, by the purchase's own event time: a partition read ahead of the others has
        brought later purchases too, and the label must not depend on that."""
        x = entry.x()
        bought = entry.bought_by(self.settings.guard_delay_s)
        for name, variant in self.variants.items():
            self._guard(name, variant, x, bought, self._served(entry, name, x), entry.ts)

    def _served(self, entry: Pending, name: str, x: Mapping[str, float | str]) -> float:
        served = entry.scores.get(name)
        # A variant added since the impression was not served: what it says now.
        return served if served is not None else self.variants[name].predict(x)

    def _labeled(self, x: Mapping[str, float | str], y: bool, ts: float) -> None:
        """A ready example: its label is known now, so it is scored and learned at once."""
        for name, variant in self.variants.items():
            p = variant.learn(x, y)
            variant.score(y, p)
            self._guard(name, variant, x, y, p, ts)
        self.counts["trained"] += 1
        self.counts["learned"] += 1

    def _guard(
        self,
        name: str,
        variant: Variant,
        x: Mapping[str, float | str],
        y: bool,
        p: float,
        ts: float,
    ) -> None:
        """Drift and rollback guards on the prediction `p` served for an example labelled `y`."""
        if not self.monitors and not self.deciders:
            return
        loss = log_loss(y, p)
        monitor = self.monitors.get(name)
        if monitor is not None:
            found = monitor.update(loss, x, p, ts, y)
            if found:
                self.alerts.extend(found)
                # The model's performance fell: what it learned is of another regime, so its
                # steps, grown small with all it saw, are made large again to re-learn fast.
                if any(a.ends is None and a.signal in PERFORMANCE_SIGNALS for a in found) and (
                    variant.adapt()
                ):
                    self.counts["adapted"] += 1
        predict, decider = self._shadow_predict.get(name), self.deciders.get(name)
        if predict is not None and decider is not None:
            shadow_loss = log_loss(y, p_true_of(predict(x)))
            decision = decider.update(loss, shadow_loss, variant.n_learned)
            if decision is not None:
                self.alerts.append(decision.alert(self.keys.shard, name, ts))
                self.roll_back(name, decision.reason)

    def set_shadows(self, models: Mapping[str, Any]) -> None:
        """The last-known-good models of this learner's variants (others are ignored)."""
        self.shadows = {n: m for n, m in models.items() if n in self.variants}
        self._shadow_predict = {n: predictor(m) for n, m in self.shadows.items()}

    def roll_back(self, name: str, reason: str) -> None:
        """Serve the last-known-good model of variant `name` again; learning goes on from it."""
        shadow = self.shadows[name]
        variant = self.variants[name]
        variant.model = modelcodec.loads(modelcodec.dumps(shadow))
        variant.restart_average()
        self.counts["rollbacks"] += 1
        # An older model under the next number: a new epoch says the line changed course.
        self.new_epoch = True
        self.lineage = {
            "rolled_back_from": self.version,
            "rolled_back_variant": name,
            "reason": reason,
        }
        for guard in (self.monitors.get(name), self.deciders.get(name)):
            if guard is not None:
                guard.reset()

    # -- state ------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """What the API and operators read: per variant facts, offsets, lineage."""
        return {
            "shard": self.keys.shard,
            **self.topology,
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
            "feature_config": {"half_life_s": self.feature_config.half_life_s},
            "store_stats": self.store.dump(),
            "variants": {
                name: {
                    "kind": v.kind,
                    "n_learned": v.n_learned,
                    "metrics": v.metrics.report(),
                    "reliability": v.metrics.reliability(),
                }
                for name, v in self.variants.items()
            },
            "joins": {**dict(self.joins.counts), "pending": len(self.joins)},
            "counts": dict(self.counts),
            "lag": {str(p): n for p, n in sorted(self.lag.items())},
            "lineage": {**self.lineage, "parent_version": self.version},
        }

    def delta(self) -> Delta:
        """Everything that changed since the last publish, with the offsets it reflects."""
        core = {
            # The served model is what `models` holds; what learning needs beside it (the
            # learning weights, when the served ones are their average) rides here.
            "variants": {
                n: (v.kind, v.metrics, v.n_learned, v.learning_state())
                for n, v in self.variants.items()
            },
            "joins": (self.joins.counts, self.joins.seq, self.joins.watermark),
            "counts": self.counts,
            "partition_time": self.partition_time,
            "guards": (self.fraud, self.monitors, self.deciders),
        }
        pending_upserts, pending_deletes = self.joins.delta()
        seen_chunk, seen_drop = self.seen.delta()
        meta = self.meta()
        point = self.history.point(
            time.time(),
            self.counts["learned"],
            sum(self.offsets.values()),
            meta["variants"],
            self.counts,
            sum(self.lag.values()) if self.lag else None,
        )
        return Delta(
            offsets=dict(self.offsets),
            meta=meta,
            core=pickle.dumps(core, protocol=pickle.HIGHEST_PROTOCOL),
            models={n: v.dumps_served() for n, v in self.variants.items()},
            pending_upserts=pending_upserts,
            pending_deletes=pending_deletes,
            seen_chunk=seen_chunk,
            seen_drop=seen_drop,
            aggregates=self.cache.dirty(),
            alerts=list(self.alerts),
            history=point,
            history_cap=self.settings.history_max_points,
            new_epoch=self.new_epoch,
        )

    def published(self, delta: Delta, version: int) -> None:
        """The delta is committed as `version`: forget what it carried."""
        self.version = version
        if delta.new_epoch:
            self.new_epoch = False
        self.joins.published()
        self.seen.published(delta.seen_drop)
        self.cache.flushed()
        del self.alerts[: len(delta.alerts)]
        self.history.published(delta.history is not None)

    def restore(self, committed: Committed) -> None:
        """Continue from committed state (a restart, a takeover, a restore)."""
        core = pickle.loads(committed.core)  # our own state, written by a fenced publish
        for name, (kind, metrics, n_learned, *rest) in core["variants"].items():
            # A variant dropped from the configuration stays behind; a new one starts fresh.
            if name not in self.variants or name not in committed.models:
                continue
            self.variants[name] = Variant.restored(
                name,
                kind,
                modelcodec.loads(committed.models[name]),
                metrics,
                n_learned,
                rest[0] if rest else None,  # state written before averaging has none
                self.settings.served_average,
            )
        counts, seq, watermark = core["joins"]
        self.joins.counts = counts
        self.joins.load(committed.pending, seq, watermark)
        self.seen.load(committed.seen_chunks)
        self.counts = core["counts"]
        self.partition_time = core.get("partition_time", {})
        self._restore_guards(*core.get("guards", (None, {}, {})))
        self.offsets = dict(committed.offsets)
        self.lineage = dict(committed.meta.get("lineage", {}))
        # A state from before the table starts an empty one: shares from the next pages.
        settings = self.settings
        self.store = StoreStats.load(
            committed.meta.get("store_stats"), settings.half_life_s, settings.store_queries
        )
        self.lineage.pop("parent_version", None)
        self.version = committed.version
        self.cache.clear()

    def _restore_guards(
        self, fraud: Any, monitors: dict[str, Any], deciders: dict[str, Any]
    ) -> None:
        """Carry on with the committed guard state where the running code and settings can.

        Guards switched on or off since: the configuration wins. State written by other
        code or for other thresholds (an upgrade, a new configuration) is dropped and the
        guard starts afresh, keeping only its example count, which alert ids rely on.
        """
        dropped = []
        if self.fraud is not None and fraud is not None:
            if resumable(fraud, self.fraud):
                self.fraud = fraud
            else:
                dropped.append("fraud")
        kinds: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...] = (
            ("drift", self.monitors, monitors),
            ("rollback", self.deciders, deciders),
        )
        for kind, running, committed in kinds:
            for name, guard in committed.items():
                fresh = running.get(name)
                if fresh is None:
                    continue
                if resumable(guard, fresh):
                    running[name] = guard
                    continue
                dropped.append(f"{kind}:{name}")
                if isinstance(fresh, DriftMonitor):
                    fresh.n = getattr(guard, "n", 0)
                    fresh.reset()  # warms up again from that count
        if dropped:
            log.warning(
                "shard %s: guard state from other code or settings not resumed, started afresh: %s",
                self.keys.shard,
                ", ".join(dropped),
            )
