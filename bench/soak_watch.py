"""What the soak benchmark reads from Redis while it runs, from a thread of its own.

- The shard's state version every `VERSION_EVERY_S`: when each version appeared in Redis,
  for the staleness of the answers (bench.soak_accounting.VersionTimeline).
- The list of seen event-id chunks (learner/dedup.py): each publish appends the hashes of
  the events it took in and trims the oldest, so following it as it grows gives every
  event id the committed state took in, once per time it did.
- The learner's lag as it last published it.
- When Redis did not answer.
"""

import threading
import time
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench.soak_accounting import Hashes, VersionTimeline, new_chunks
from learner.layout import ShardKeys
from learner.redisconn import connect
from stream.settings import StreamSettings

VERSION_EVERY_S: Final = 0.02
SEEN_EVERY_S: Final = 0.5


@dataclass
class Outage:
    start: float
    end: float | None = None


@dataclass
class SeenIds:
    """The followed chunks, and how often the history could not be followed."""

    chunks: list[bytes] = field(default_factory=list)
    breaks: int = 0
    """Times the last chunk taken was no longer in the list: a restore or a lost write
    replaced the committed history, so the id audit is not exact across it."""

    def hashes(self) -> Hashes:
        return np.frombuffer(b"".join(self.chunks), dtype="<u8").astype(np.uint64)


class RedisWatch:
    """Polls the shard's state in Redis until stopped."""

    def __init__(self, stream: StreamSettings, shard: str = "main") -> None:
        self.keys = ShardKeys(stream.key_prefix, shard)
        self.client: redis.Redis = connect(
            stream,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        self.timeline = VersionTimeline()
        self.seen = SeenIds()
        self.lag: list[tuple[float, int]] = []
        self.outages: list[Outage] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-redis-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.follow_seen()  # the last publishes
        self.client.close()

    def holder_pid(self) -> int | None:
        """The pid of the learner holding the shard's lease (owner is host:pid:id|gen)."""
        raw = self.client.get(self.keys.lease)
        return int(raw.decode().split(":")[1]) if raw else None

    def leases_granted(self) -> int:
        """How many times the shard's lease was granted (learner/keys.py: the generation)."""
        raw = self.client.get(self.keys.generation)
        return int(raw) if raw is not None else 0

    def _run(self) -> None:
        next_seen = 0.0
        while not self._stop.wait(VERSION_EVERY_S):
            now = time.time()
            try:
                raw = self.client.hget(self.keys.state, "version")
                if raw is not None:
                    with self._lock:
                        self.timeline.observe(now, int(raw))
                if now >= next_seen:
                    self.follow_seen()
                    self._read_lag(now)
                    next_seen = now + SEEN_EVERY_S
            except (redis.RedisError, OSError):
                if not self.outages or self.outages[-1].end is not None:
                    self.outages.append(Outage(now))
                continue
            if self.outages and self.outages[-1].end is None:
                self.outages[-1].end = now

    def _read_lag(self, now: float) -> None:
        raw = self.client.hget(self.keys.state, "meta")
        if raw is not None:
            lag = orjson.loads(raw).get("lag", {})
            self.lag.append((now, sum(int(n) for n in lag.values())))

    def follow_seen(self) -> None:
        """Take the chunks appended since the last call (fetching more of the list's tail
        until the last chunk taken is among them)."""
        length = int(self.client.llen(self.keys.seen))
        if not length:
            return  # nothing published yet
        want = 8
        while True:
            fetched = list(self.client.lrange(self.keys.seen, -want, -1))
            known = self.seen.chunks[-1] if self.seen.chunks else None
            new = new_chunks(known, fetched)
            if new is not None:
                self.seen.chunks.extend(new)
                return
            if want >= length:
                self.seen.breaks += 1
                self.seen.chunks.extend(fetched[-1:])  # follow on from here
                return
            want *= 4
