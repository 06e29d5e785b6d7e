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

The worker is handed its collaborators (the reader of the events topic, the two side
topics, the lease, the state store): `learner.compose.build_worker` builds them from
the settings for `headrace learn`, and the tests hand in-process ones to the same loop.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import redis
from confluent_kafka import Message

from guards.settings import GuardSettings
from learner import control, telemetry
from learner.aggregates import AggregateCache
from learner.counters import MISROUTED, REJECTED
from learner.duties import OperatorDuties
from learner.epoch import NO_STATE, Stamp
from learner.errors import FencedError, StateMovedError
from learner.lease import Lease
from learner.loop import Learner
from learner.recovery import Snapshots
from learner.settings import LearnerSettings
from learner.signing import Seal
from learner.state import StateStore
from stream.dlq import Headers, rejection_headers, verdict_headers
from stream.errors import PublishError, StreamError
from stream.events import Rejection, parse_event
from stream.shards import RoutingCheck, parse_shards

_CONTROL_EVERY_S = 0.05
"""How often the active learner looks for an operator's command (snapshot, restore, ...)."""

_SIDE_RETRY_S = 5.0
"""Pause before starting over from the published state when a side topic took no record."""

log = logging.getLogger("headrace.learner")


class Reader(Protocol):
    """The events topic as the loop reads it (stream.reader.EventsReader)."""

    @property
    def topic(self) -> str: ...

    def partitions(self) -> list[int]: ...

    def assign(self, partitions: list[int], offsets: dict[int, int]) -> None: ...

    def unassign(self) -> None: ...

    def poll(self, most: int) -> list[Message]: ...

    def ends(self, fresh: bool = False) -> dict[int, int]: ...

    def commit(self, offsets: dict[int, int], wait: bool) -> None: ...

    def close(self) -> None: ...


class Aside(Protocol):
    """A side topic (stream.dlq.SideTopic): records sent there are written by `flush`."""

    def send(self, record: Message, headers: Headers) -> None: ...

    def flush(self) -> None: ...


class ShardWorker:
    """One learner process serving one shard (active or standby)."""

    def __init__(
        self,
        settings: LearnerSettings,
        client: redis.Redis,
        *,
        shards: str,
        reader: Reader,
        dead: Aside,
        quarantine: Aside,
        lease: Lease,
        store: StateStore,
        seal: Seal,
        on_publish: Callable[[int, Learner], None] | None = None,
        snapshots: Snapshots | None = None,
        guards: GuardSettings | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        """`shards` is HEADRACE_SHARDS; `close` releases what the collaborators hold
        besides the reader (the side topics' producer) when `run` ends."""
        self.settings = settings
        self.client = client
        self.keys = store.keys
        self.shards = shards
        self.lease = lease
        self.seal = seal
        self.store = store
        self.learner: Learner | None = None
        self._announce = False
        self.stamp: Stamp = NO_STATE
        """The (epoch, version) this process last wrote or loaded."""
        self._last_learned = 0
        self._on_publish = on_publish
        self.snapshots = snapshots
        self.guards = guards
        self.duties = OperatorDuties(client, self.keys, lease, store, snapshots)
        self._routing: RoutingCheck | None = None
        self._reader = reader
        self._dead = dead
        self._quarantine = quarantine
        self._close = close
        self._pending = 0
        self._last_publish = self._last_renew = self._last_control = 0.0

    # -- lifecycle --------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set: standby until the lease is ours, then active."""
        retry_s = self.settings.lease_ttl_ms / 3000
        try:
            while not stop.is_set():
                if not self.lease.try_acquire():
                    stop.wait(self.lease.next_try_s(retry_s))
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
                    self.deactivate()
        finally:
            self.lease.release()
            self._reader.close()
            if self._close is not None:
                self._close()

    def _active(self, stop: threading.Event) -> None:
        taken_over = True
        # A restore replaces the committed state: start over from it, lease kept.
        while self._owned(stop, taken_over):
            taken_over = False

    def _owned(self, stop: threading.Event, taken_over: bool) -> bool:
        """Consume while owning the shard; True when the state was replaced and must reload."""
        self.activate(taken_over)
        while not stop.is_set():
            if self.step():
                return True
        self.finish()
        return False

    def activate(self, taken_over: bool = True) -> Learner:
        """With the lease held: load the committed state and read from its offsets.

        `taken_over`: the lease was just taken (not a reload after a restore under the same
        lease), so the next publish starts a new epoch (learner/epoch.py)."""
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
        self._pending = 0
        self._last_publish = self._last_renew = self._last_control = time.monotonic()
        return learner

    def step(self) -> bool:
        """One turn of the loop: an operator's command, a poll, publish when due, keep the
        lease, snapshot when due. True when the state was replaced and must be reloaded."""
        learner = self.learner
        assert learner is not None, "activate() first"
        # A Redis round trip per loop showed in the profile; operators wait 50 ms more.
        if time.monotonic() - self._last_control >= _CONTROL_EVERY_S:
            command = control.next_command(self.client, self.keys)
            self._last_control = time.monotonic()
            if command is not None:
                if self._pending:
                    self.publish()
                replaced = self.duties.command(command, learner, self._publish)
                if replaced is not None:
                    self.stamp = replaced  # reloaded as this process's own state, epoch kept
                    return True
        batch = self._reader.poll(self.settings.poll_max_records)
        if batch:
            # A long pause (a slow snapshot, a starved machine) may have cost the lease. A
            # learner that no longer owns the shard must not send this batch's records aside:
            # its fraud verdicts would come from aggregates the new owner has moved on.
            if (time.monotonic() - self._last_renew) * 1000 >= self.settings.lease_ttl_ms / 3:
                self._keep_lease()
                self._last_renew = time.monotonic()
            self._pending += self._process(learner, batch)
        now = time.monotonic()
        pending = self._pending
        due = pending >= self.settings.publish_every_events or (
            pending and (now - self._last_publish) * 1000 >= self.settings.publish_every_ms
        )
        if due:
            self.publish()
            self._last_publish = self._last_renew = now
        elif (now - self._last_renew) * 1000 >= self.settings.lease_ttl_ms / 3:
            self._keep_lease()
            self._last_renew = now
        if self.duties.snapshot_due(now, self.stamp.version):
            self.duties.scheduled_snapshot(self.learner)
        return False

    def finish(self) -> None:
        """A clean stop publishes what was learned since the last publish, and snapshots it."""
        learner = self.learner
        assert learner is not None, "activate() first"
        if self._pending:
            self.publish(final=True)
        elif learner.offsets:
            self._commit_group(learner.offsets, wait=True)
        if self.duties.snapshot_pending(self.stamp.version):
            self.duties.scheduled_snapshot(self.learner)

    def deactivate(self) -> None:
        """Forget the shard: what is in memory is rebuilt from Redis when it is ours again."""
        telemetry.ACTIVE.labels(self.keys.shard).set(0)
        self._reader.unassign()
        self.learner = None

    def _load(self, taken_over: bool) -> Learner:
        learner = Learner(self.settings, self.keys, AggregateCache(self.client), self.guards)
        committed = self.store.load()
        restored = False
        if committed is None and self.snapshots is not None:
            committed = self.duties.cold_start()
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
        self.duties.load_shadows(learner)
        return learner

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
        topic = self._reader.topic
        available = self._reader.partitions()
        deadline = time.monotonic() + 30
        while not available:
            if time.monotonic() > deadline:
                raise StreamError(f"topic {topic} has no partitions (does it exist?)")
            time.sleep(0.2)
            available = self._reader.partitions()
        shards = parse_shards(self.shards, len(available))
        if self.keys.shard not in shards:
            raise StreamError(f"shard {self.keys.shard} is not in HEADRACE_SHARDS={self.shards}")
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
        """Commit what was learned: dead letters first, then the state, then group offsets;
        return the version published."""
        return self._publish(final).version

    def _publish(self, final: bool = False) -> Stamp:
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
        self._pending = 0
        for alert in delta.alerts:
            if alert.ends is not None:
                continue  # the record that closes an alert is not a detection
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
        return stamp

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
