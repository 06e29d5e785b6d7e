"""The models this replica serves, swapped in by a background thread, never on a request.

`ModelHolder.served` is one immutable `Served`; a request reads the reference once and
scores everything with what it found, so each response names exactly the epoch and version
that computed it. The thread listens on the versions channel and also checks every shard's
(epoch, version) every `poll_s` (messages lost while it was away, Redis restarts), loads a
newer state completely, then swaps the one reference.

States compare by (epoch, version) (learner/epoch.py). A restore, a rollback and a learner
taking the shard over start a new epoch, so the state they write is followed even when its
version number is lower than the one served (Redis lost the last writes, or came back empty
and was restored). A state older than the one served is never swapped in, and neither is
one whose signature does not verify: the replica keeps serving what it has, and says why
on /ready and in its log.

The same poll notices a shard whose state hash is gone while this replica serves a model
of it (FLUSHALL, a Redis that came back empty, a wrong key prefix): the replica keeps
serving from memory, but /ready fails and says so, since the online aggregates are gone
too. The state that appears next is followed whatever its version: the old one is gone,
and what a learner or a restore writes now is the state that is really there.
"""

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from api.loading import ShardModel, load_shard
from api.online import RedisHealth
from api.telemetry import Metrics
from api.traffic import ShardRouter, shard_names
from learner.epoch import NO_STATE, Stamp
from learner.errors import StateError, UnverifiedStateError
from learner.layout import ShardKeys, parse_announcement, read_stamps, versions_channel
from learner.signing import Seal
from stream.errors import StreamError

log = logging.getLogger("headrace.api")


@dataclass(frozen=True, slots=True)
class Served:
    """Everything a request needs to find its model, as of one moment."""

    shards: dict[str, ShardModel] = field(default_factory=dict)
    router: ShardRouter | None = None


class ModelHolder:
    """Keeps the newest model state of every shard in memory."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        shard_spec: str,
        wanted: Callable[[list[str]], Iterable[str]],
        seal: Seal,
        metrics: Metrics,
        health: RedisHealth,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._spec = shard_spec
        self._keys = {name: ShardKeys(prefix, name) for name in shard_names(shard_spec)}
        self._wanted = wanted
        self._seal = seal
        self._metrics = metrics
        self.health = health
        self._poll_s = poll_s
        self._clock = clock
        self._failed: dict[str, Stamp] = {}
        self.refused: dict[str, str] = {}
        """Shard → why its newest version was refused (a signature that did not verify)."""
        self.missing: dict[str, str] = {}
        """Shard → why its served model has no state behind it in Redis any more."""
        self.rewound: dict[str, str] = {}
        """Shard → why Redis holds an older state than the one served (it lost writes, and
        no learner has published since): served on until a newer one is published."""
        self._frozen = False
        self.served = Served(router=ShardRouter(shard_spec, None))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def shard_names(self) -> list[str]:
        return list(self._keys)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="headrace-models", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        pubsub = None
        backoff = min(self._poll_s, 0.2)
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(versions_channel(self._prefix))
                self.refresh()
                deadline = time.monotonic() + self._poll_s
                while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    message = pubsub.get_message(timeout=min(left, 0.5))
                    if message is not None:
                        self._announced(message.get("data"))
                backoff = min(self._poll_s, 0.2)
            except (redis.RedisError, OSError) as exc:
                self._metrics.redis_errors.labels("models").inc()
                self.health.down(f"{type(exc).__name__}: {exc}")
                if pubsub is not None:
                    _close_quietly(pubsub)
                    pubsub = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._poll_s)
            except Exception:
                # A bug must not end the thread: requests would be served a stale model
                # forever without a sign. Log it and keep polling.
                log.exception("model holder: unexpected error; retrying")
                self._stop.wait(self._poll_s)
        if pubsub is not None:
            _close_quietly(pubsub)

    def _announced(self, data: object) -> None:
        announced = parse_announcement(data)
        if announced is None:
            return
        shard, stamp = announced
        current = self.served.shards.get(shard)
        if shard in self._keys and (current is None or stamp > current.stamp):
            self.refresh([shard])

    # -- loading ----------------------------------------------------------

    def refresh(self, only: Iterable[str] | None = None) -> None:
        """Load every shard (or `only` these) whose published (epoch, version) is newer; swap."""
        names = list(only) if only is not None else list(self._keys)
        stamps = read_stamps(self._client, [self._keys[name] for name in names])
        self.health.up()
        for name, stamp in zip(names, stamps, strict=True):
            current = self.served.shards.get(name)
            if stamp == NO_STATE:
                if current is not None:
                    self._gone(name, current)
                continue
            lost = name in self.missing
            if current is not None and stamp <= current.stamp and not lost:
                if stamp < current.stamp:
                    self._behind(name, current, stamp)
                continue
            if self._failed.get(name) == stamp:
                continue  # this state did not load, or was not newer once verified
            self._load(name, current, stamp, any_version=lost)

    def _behind(self, name: str, current: ShardModel, stamp: Stamp) -> None:
        if name not in self.rewound:
            log.warning(
                "shard %s: Redis holds %s, older than the %s served; serving it until a newer "
                "state is published (a learner taking the shard over starts a new epoch)",
                name,
                stamp,
                current.stamp,
            )
        self.rewound[name] = (
            f"shard {name}: Redis holds {stamp}, older than the {current.stamp} served "
            "(it lost writes); served until a learner publishes"
        )

    def _gone(self, name: str, current: ShardModel) -> None:
        if name not in self.missing:
            log.error(
                "shard %s: its state is gone from Redis; serving version %d from memory",
                name,
                current.version,
            )
        self.missing[name] = (
            f"shard {name}: its state is gone from Redis ({self._keys[name].state} missing); "
            f"serving version {current.version} from memory, without online features"
        )
        self.rewound.pop(name, None)
        # Whatever is published next is new state, even with a number seen before.
        self._failed.pop(name, None)

    def _load(
        self, name: str, current: ShardModel | None, stamp: Stamp, any_version: bool = False
    ) -> None:
        started = time.perf_counter()
        try:
            loaded = load_shard(
                self._client,
                self._keys[name],
                current,
                self._wanted,
                self._seal,
                self._clock,
                any_version=any_version,
            )
        except UnverifiedStateError as exc:
            self._failed[name] = stamp
            self.refused[name] = str(exc)
            self._metrics.unverified.labels(name).inc()
            log.error("shard %s: not served, keeping what is served: %s", name, exc)
            return
        except (StateError, ValueError, TypeError, KeyError) as exc:
            self._failed[name] = stamp
            self._metrics.load_errors.labels(name).inc()
            log.error("shard %s: %s does not load, keeping the one served: %s", name, stamp, exc)
            return
        if loaded is None or loaded is current:
            # Not newer once its signature was read (an epoch written around the learner):
            # not read again until the state changes.
            self._failed[name] = stamp
            return
        self.refused.pop(name, None)
        self.rewound.pop(name, None)
        if self.missing.pop(name, None) is not None:
            log.info("shard %s: state is back in Redis at %s", name, loaded.stamp)
        self._metrics.load_seconds.labels(name).observe(time.perf_counter() - started)
        self._swap(loaded)

    def _swap(self, loaded: ShardModel) -> None:
        served = self.served
        router = served.router
        n_partitions = loaded.meta.get("n_partitions")
        if isinstance(n_partitions, int) and (
            router is None or router.n_partitions != n_partitions
        ):
            try:
                router = ShardRouter(self._spec, n_partitions)
            except StreamError as exc:
                log.error("HEADRACE_SHARDS does not fit %d partitions: %s", n_partitions, exc)
        # One assignment: a request sees the old Served or the new one, never a mix.
        self.served = Served({**served.shards, loaded.shard: loaded}, router)
        self._metrics.swaps.labels(loaded.shard).inc()
        if not self._frozen and len(self.served.shards) == len(self._keys):
            # Everything alive now (the app, its libraries, the first models) stays alive:
            # moved out of the collector's sight, full collections stop walking it. In a
            # 100-candidate profile a collection inside a request cost ~80 us less. Only
            # once: models swapped out later must stay collectable.
            gc.freeze()
            self._frozen = True
        log.info("shard %s: serving %s", loaded.shard, loaded.stamp)


def _close_quietly(pubsub: Any) -> None:
    with contextlib.suppress(redis.RedisError, OSError):
        pubsub.close()
