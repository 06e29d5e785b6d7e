"""The learner process's loop: own a shard, consume it, learn, publish, repeat.

A process waits as a hot standby until it acquires the shard's lease, then
reads the committed state, seeks its partitions to the committed offsets
(not the group's) and consumes. Every publish writes the state and offsets
in one fenced transaction; only then are the offsets also committed to the
consumer group, for lag tools. Losing the lease drops everything in memory
and goes back to standby.

Taking the lease starts a new epoch (learner/epoch.py), published at once, so
every API replica follows the state this learner continues from even when
Redis lost the last versions they were served (another owner may have
published them, even after this process last held the lease). Finding, at a
publish or a lease renewal, that the state in Redis is not the one this
process last wrote or loaded means Redis lost writes under it: it drops what
it holds and takes the shard over again from what Redis has.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import redis
from confluent_kafka import Message

from guards.settings import GuardSettings
from learner import telemetry
from learner.aggregates import AggregateCache
from learner.counters import MISROUTED, REJECTED
from learner.epoch import NO_STATE, Stamp
from learner.errors import FencedError, StateMovedError
from learner.keys import ShardKeys
from learner.loop import Learner
from learner.settings import LearnerSettings
from learner.signing import Seal
from learner.state import StateStore
from stream import control
from stream.dlq import SideTopic, rejection_headers, side_producer, verdict_headers
from stream.duties import OperatorDuties
from stream.errors import PublishError, StreamError
from stream.events import Rejection, parse_event
from stream.lease import Lease
from stream.limits import path_limits
from stream.reader import EventsReader
from stream.recovery import Snapshots
from stream.settings import StreamSettings
from stream.shards import RoutingCheck, parse_shards

_CONTROL_EVERY_S = 0.05
"""How often the active learner looks for an operator's command (snapshot, restore, ...)."""

_SIDE_RETRY_S = 5.0
"""Pause before starting over from the published state when a side topic took no record."""

log = logging.getLogger("headrace.learner")


class ShardWorker(OperatorDuties):
    """One learner process serving one shard (active or standby)."""

    def __init__(
        self,
        stream: StreamSettings,
        settings: LearnerSettings,
        client: redis.Redis,
        *,
        seal: Seal,
        owner_id: str | None = None,
        on_publish: Callable[[int, Learner], None] | None = None,
        snapshots: Snapshots | None = None,
        guards: GuardSettings | None = None,
    ) -> None:
        self.stream = stream
        self.settings = settings
        self.client = client
        self.keys = ShardKeys(stream.key_prefix, settings.shard)
        self.lease = Lease(client, self.keys, settings.lease_ttl_ms, owner_id)
        self.seal = seal
        self.store = StateStore(client, self.keys, settings.lease_ttl_ms, seal)
        self.learner: Learner | None = None
        self._announce = False
        self.stamp: Stamp = NO_STATE
        """The (epoch, version) this process last wrote or loaded."""
        self._last_learned = 0
        self._on_publish = on_publish
        self.snapshots = snapshots
        self.guards = guards
        self._last_snapshot = time.monotonic()
        self._snapshot_version = 0
        self._routing: RoutingCheck | None = None
        limits = path_limits(stream)
        self._reader = EventsReader(
            stream.kafka_bootstrap,
            stream.topic_events,
            settings.group_id,
            f"headrace-learner-{settings.shard}",
            limits.events,
        )
        self._producer = side_producer(
            stream.kafka_bootstrap, "headrace-learner-dlq", (limits.dlq, limits.quarantine)
        )
        side = _SideMetrics(settings.shard)
        self._dead = SideTopic(self._producer, stream.topic_dlq, limits.dlq, side)
        self._quarantine = SideTopic(
            self._producer, stream.topic_quarantine, limits.quarantine, side
        )

    # -- lifecycle --------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set: standby until the lease is ours, then active."""
        retry_s = self.settings.lease_ttl_ms / 3000
        try:
            while not stop.is_set():
                if not self.lease.try_acquire():
                    stop.wait(retry_s)
                    continue
                log.info(
                    "shard %s: active (lease generation %d)", self.keys.shard, self.lease.generation
                )
                try:
                    self._active(stop)
                except FencedError as exc:
                    log.warning("shard %s: fenced, back to standby: %s", self.keys.shard, exc)
                except PublishError as exc:
                    # Nothing was published past the unwritten records: start over from
                    # the published state, which sends them again, rather than exit.
                    log.error(
                        "shard %s: %s; starting over from the published state in %.0f s",
                        self.keys.shard,
                        exc,
                        _SIDE_RETRY_S,
                    )
                    self.lease.release()
                    stop.wait(_SIDE_RETRY_S)
                finally:
                    telemetry.ACTIVE.labels(self.keys.shard).set(0)
                    self._reader.unassign()
                    self.learner = None
        finally:
            self.lease.release()
            self._reader.close()
            self._producer.flush(10)

    def _active(self, stop: threading.Event) -> None:
        taken_over = True
        # A restore replaces the committed state: start over from it, lease kept.
        while self._owned(stop, taken_over):
            taken_over = False

    def _load(self, taken_over: bool) -> Learner:
        learner = Learner(self.settings, self.keys, AggregateCache(self.client), self.guards)
        committed = self.store.load()
        restored = False
        if committed is None and self.snapshots is not None:
            committed = self._cold_start()
            restored = committed is not None
        self.stamp = committed.stamp if committed is not None else NO_STATE
        # A new owner (this process too, when it takes the lease again: another may have
        # published meanwhile, and Redis lost it) continues under a new epoch, published at
        # once so replicas served a lost version follow without waiting for traffic. A cold
        # start's restore took one already.
        learner.new_epoch = taken_over and not restored
        self._announce = learner.new_epoch and committed is not None
        if committed is not None:
            learner.restore(committed)
            # Signed with a key retired by a rotation: sign it anew at once, so readers can
            # drop the old key without waiting for traffic.
            signer = self.seal.signer
            if signer is not None and committed.signed_by != signer.public:
                self._announce = True
        self.learner = learner
        self._last_learned = learner.counts["learned"]
        self._load_shadows(learner)
        return learner

    def _owned(self, stop: threading.Event, taken_over: bool) -> bool:
        """Consume while owning the shard; True when the state was replaced and must reload."""
        learner = self._load(taken_over)
        partitions, n_partitions = self._partitions()
        learner.topology = {"partitions": partitions, "n_partitions": n_partitions}
        if self._routing is None or self._routing.n_partitions != n_partitions:
            self._routing = RoutingCheck(n_partitions)
        self._reader.assign(partitions, learner.offsets)
        # Which partitions hold a backlog decides the join's watermark from the first
        # record on (Learner._watermark): ask the broker before reading any.
        learner.ends = self._reader.ends(fresh=True)
        # Loading a large state can outlast the lease: renew before consuming.
        self._keep_lease()
        if self._announce:
            self.publish()
            self._announce = False
        telemetry.ACTIVE.labels(self.keys.shard).set(1)
        pending = 0
        last_publish = last_renew = last_control = time.monotonic()
        while not stop.is_set():
            # A Redis round trip per loop showed in the profile; operators wait 50 ms more.
            command = None
            if time.monotonic() - last_control >= _CONTROL_EVERY_S:
                command = control.next_command(self.client, self.keys)
                last_control = time.monotonic()
            if command is not None:
                if pending:
                    self.publish()
                    pending = 0
                if self._command(command, learner):
                    return True
            batch = self._reader.poll(self.settings.poll_max_records)
            if batch:
                pending += self._process(learner, batch)
            now = time.monotonic()
            due = pending >= self.settings.publish_every_events or (
                pending and (now - last_publish) * 1000 >= self.settings.publish_every_ms
            )
            if due:
                self.publish()
                pending = 0
                last_publish = last_renew = now
            elif (now - last_renew) * 1000 >= self.settings.lease_ttl_ms / 3:
                self._keep_lease()
                last_renew = now
            if self._snapshot_due(now):
                self._snapshot()
        # A clean stop publishes what was learned since the last publish, and snapshots it.
        if pending:
            self.publish(final=True)
        elif learner.offsets:
            self._commit_group(learner.offsets, wait=True)
        if self.snapshots is not None and self.stamp.version not in (0, self._snapshot_version):
            self._snapshot()
        return False

    def _keep_lease(self) -> None:
        if not self.lease.renew() and not self._reclaim():
            raise FencedError(f"shard {self.keys.shard}: lease lost")
        # Also while idle: a Redis that lost its last writes is noticed within a renewal.
        stored = self.store.stamp()
        if stored != self.stamp:
            raise StateMovedError(self.keys.shard, self.stamp, stored)

    def _reclaim(self) -> bool:
        """Take the lease again after it merely expired (a long pause, a slow load).

        Safe only when nobody published meanwhile: the committed state must still
        be ours. Otherwise another learner owned the shard, and this state is stale.
        """
        held = self.lease.token
        if not self.lease.try_acquire():
            return False
        if self.store.stamp() != self.stamp:
            return False
        if self.lease.token != held and self.learner is not None:
            # A lease of a new generation: whoever held it meanwhile may have published
            # versions Redis then lost, so this owner's next publish starts a new epoch.
            self.learner.new_epoch = True
        log.warning(
            "shard %s: lease had expired; reclaimed (generation %d)",
            self.keys.shard,
            self.lease.generation,
        )
        return True

    def _partitions(self) -> tuple[list[int], int]:
        topic = self.stream.topic_events
        available = self._reader.partitions()
        deadline = time.monotonic() + 30
        while not available:
            if time.monotonic() > deadline:
                raise StreamError(f"topic {topic} has no partitions (does it exist?)")
            time.sleep(0.2)
            available = self._reader.partitions()
        shards = parse_shards(self.stream.shards, len(available))
        if self.keys.shard not in shards:
            raise StreamError(
                f"shard {self.keys.shard} is not in HEADRACE_SHARDS={self.stream.shards}"
            )
        return shards[self.keys.shard], len(available)

    # -- work -------------------------------------------------------------

    def _process(self, learner: Learner, batch: list[Message]) -> int:
        shard = self.keys.shard
        parsed = []
        for record in batch:
            error = record.error()
            if error is None:
                parsed.append((record, parse_event(record.value())))
            else:  # not a record: a fetch error reported in its place
                log.warning("shard %s: %s", shard, error.str())
        learner.prefetch(e for _, e in parsed if not isinstance(e, Rejection))
        learner.ends.update(self._reader.ends())
        types: Counter[str] = Counter()
        routing = self._routing
        misrouted = 0
        for record, event in parsed:
            partition, offset = record.partition(), record.offset()
            assert partition is not None and offset is not None  # a record, not an error
            if isinstance(event, Rejection):
                self._dead.send(record, rejection_headers(record, event))
                learner.skip(partition, offset)
                learner.counts[f"{REJECTED}{event.reason}"] += 1
                telemetry.REJECTED.labels(shard, event.reason).inc()
                continue
            types[event.type] += 1
            if routing is not None and routing.misrouted(event.user_id, partition):
                misrouted += 1
            verdict = learner.process(event, partition, offset)
            if verdict is not None:
                self._quarantine.send(record, verdict_headers(record, verdict))
                telemetry.QUARANTINED.labels(shard, verdict.rule).inc()
        # Once a batch: a labelled child lookup per event showed in the profile.
        for kind, count in types.items():
            telemetry.EVENTS.labels(shard, kind).inc(count)
        if misrouted:
            learner.counts[MISROUTED] += misrouted
            telemetry.MISROUTED.labels(shard).inc(misrouted)
        return len(parsed)

    def publish(self, final: bool = False) -> int:
        """Commit what was learned: dead letters first, then the state, then group offsets."""
        learner = self.learner
        if learner is None or self.lease.token is None:
            raise FencedError(f"shard {self.keys.shard}: not active")
        shard = self.keys.shard
        self._dead.flush()
        self._quarantine.flush()
        started = time.perf_counter()
        learner.lag = self._lag(learner)
        delta = learner.delta()
        learned_before = learner.counts["learned"]
        try:
            stamp = self.store.publish(self.lease.token, delta, after=self.stamp)
        except StateMovedError:
            raise  # Redis lost writes: this state is stale whoever holds the lease
        except FencedError:
            if not self._reclaim():
                raise
            stamp = self.store.publish(self.lease.token, delta, after=self.stamp)
        if stamp.epoch != self.stamp.epoch:
            log.info("shard %s: epoch %d begins at version %d", shard, stamp.epoch, stamp.version)
        self.stamp = stamp
        learner.published(delta, stamp.version)
        for alert in delta.alerts:
            telemetry.ALERTS.labels(shard, alert.variant, alert.detector).inc()
            if alert.detector == "rollback":
                telemetry.ROLLBACKS.labels(shard, alert.variant).inc()
        telemetry.PUBLISH_SECONDS.labels(shard).observe(time.perf_counter() - started)
        telemetry.VERSION.labels(shard).set(stamp.version)
        telemetry.EPOCH.labels(shard).set(stamp.epoch)
        telemetry.LAST_PUBLISH.labels(shard).set(time.time())
        self._observe(learner, learned_before)
        self._commit_group(delta.offsets, wait=final)
        if self._on_publish is not None:
            self._on_publish(stamp.version, learner)
        return stamp.version

    def _commit_group(self, offsets: dict[int, int], wait: bool) -> None:
        """Commit `offsets` to the consumer group, where standard lag tools look.

        The real offsets live in Redis with the state, so the group's commit runs
        behind the learning (async) except at a clean stop, which waits for it.
        """
        self._reader.commit(offsets, wait)

    def _observe(self, learner: Learner, learned: int) -> None:
        shard = self.keys.shard
        telemetry.LEARNED.labels(shard).inc(learned - self._last_learned)
        self._last_learned = learned
        for kind, count in learner.joins.counts.items():
            telemetry.JOINS.labels(shard, kind).set(count)
        for name, variant in learner.variants.items():
            telemetry.set_progressive(shard, name, variant.metrics.report())
        for partition, lag in learner.lag.items():
            telemetry.LAG.labels(shard, str(partition)).set(lag)

    def _lag(self, learner: Learner) -> dict[int, int]:
        """Records behind each partition's end, from the ends the last fetches reported."""
        positions = learner.offsets
        return {
            p: max(0, end - positions[p])
            for p, end in self._reader.ends().items()
            if p in positions
        }


class _SideMetrics:
    """What became of the records sent aside, as the learner's metrics."""

    def __init__(self, shard: str) -> None:
        self.shard = shard

    def truncated(self, topic: str) -> None:
        telemetry.SIDE_TRUNCATED.labels(self.shard, topic).inc()

    def refused(self, topic: str, error: str) -> None:
        telemetry.SIDE_ERRORS.labels(self.shard, topic, error).inc()

    def lost(self, topic: str) -> None:
        telemetry.SIDE_LOST.labels(self.shard, topic).inc()
