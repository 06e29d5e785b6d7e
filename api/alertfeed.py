"""The live alert feed: one reader of the alerts stream per worker, fanned out to every
client of /drift/alerts/stream.

A stream that ran its own blocking XREAD held a thread of the worker's pool for each
second it waited: with a few hundred streams open, a new client waited tens of seconds
for a thread. Here one asyncio task waits on XREAD (redis.asyncio: no thread at all) and
puts each new alert on every subscriber's queue; a subscriber costs a queue. The reader
runs while anyone listens. At most `capacity` subscribers at once: one more is refused
(503 with Retry-After), so memory and connections stay bounded.

A subscriber starts at the reader's position when it subscribed: every later alert
comes through its queue. A client that resumes from an older Last-Event-ID first reads
the entries in between (`backlog`), so it misses none and gets none twice. A subscriber
that falls `queue_size` alerts behind is dropped; its client reconnects with
Last-Event-ID and reads what it missed from the backlog.
"""

import asyncio
import logging
from typing import Any

import redis
import redis.asyncio

from api.errors import TooManyStreamsError
from learner.alertstore import decode, parse_id
from learner.redisconn import async_sentinels

log = logging.getLogger("headrace.api")

Entry = tuple[str, dict[str, Any]]

_BACKLOG_PAGE = 1_000


class Subscriber:
    """One client's view of the feed: where it starts, and the alerts since."""

    def __init__(self, start: str | None, queue_size: int) -> None:
        self.queue: asyncio.Queue[Entry] = asyncio.Queue(maxsize=queue_size)
        self.start = start
        """The feed's position when this subscriber joined: its queue holds what came after.
        None until the reader has read where the stream ends."""
        self.positioned = asyncio.Event()
        if start is not None:
            self.positioned.set()
        self.dropped = False
        """Set when the subscriber fell `queue_size` alerts behind: its stream must end."""

    def position(self, start: str) -> None:
        if self.start is None:
            self.start = start
            self.positioned.set()

    def offer(self, entry: Entry) -> None:
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped = True


class AlertFeed:
    """Reads the alerts stream `key` once for every subscriber of this worker."""

    def __init__(
        self,
        redis_url: str,
        key: str,
        capacity: int,
        *,
        password: str | None = None,
        sentinels: list[tuple[str, int]] | None = None,
        service: str = "",
        block_ms: int = 1_000,
        queue_size: int = 1_000,
    ) -> None:
        self.key = key
        self.capacity = capacity
        self.block_ms = block_ms
        self.queue_size = queue_size
        self._url = redis_url
        self._password = password
        self._sentinels = sentinels
        self._service = service
        self._client: redis.asyncio.Redis | None = None
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self.position: str | None = None
        """The id of the last entry the reader has seen (None while nobody listens)."""

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber:
        """A new subscriber from the current position; 503 when every place is taken."""
        if len(self._subscribers) >= self.capacity:
            raise TooManyStreamsError(
                f"{self.capacity} live alert streams are open on this worker "
                "(HEADRACE_MAX_ALERT_STREAMS); try again later or poll /drift/alerts"
            )
        subscriber = Subscriber(self.position, self.queue_size)
        self._subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._read())
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def backlog(self, after: str, until: str) -> list[Entry]:
        """The entries after `after` up to and including `until`, oldest first."""
        found: list[Entry] = []
        lower = "(" + after
        while True:
            page = decode(
                await self._redis().xrange(self.key, min=lower, max=until, count=_BACKLOG_PAGE)
            )
            found.extend(page)
            if len(page) < _BACKLOG_PAGE:
                return found
            lower = "(" + page[-1][0]

    async def close(self) -> None:
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # closing must not fail a shutdown
                log.warning("the alert feed's reader failed: %s", exc)
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None and self._sentinels:
            # Each new connection asks the sentinels for the primary: a failover breaks
            # the reader's connection, and its retry reaches the promoted replica.
            sentinel = async_sentinels(self._sentinels, self._url, self._password, 2)
            self._client = sentinel.master_for(
                self._service,
                socket_timeout=self.block_ms / 1000 + 5,
                socket_connect_timeout=2,
            )
        if self._client is None:
            # The reader's XREAD blocks one connection; a resuming client's backlog takes
            # another, waiting (not failing) when a few are already busy.
            # As learner.redisconn.connect: the URL's own credentials win over the setting.
            extra = {"password": self._password} if self._password is not None else {}
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self._url,
                **extra,
                max_connections=4,
                timeout=5,
                socket_timeout=self.block_ms / 1000 + 5,
                socket_connect_timeout=2,
            )
            self._client = redis.asyncio.Redis(connection_pool=pool)
        return self._client

    async def _read(self) -> None:
        client = self._redis()
        pause = 0.1
        while self._subscribers:
            try:
                if self.position is None:
                    newest = await client.xrevrange(self.key, count=1)
                    self.position = newest[0][0].decode() if newest else "0-0"
                    for subscriber in self._subscribers:
                        subscriber.position(self.position)
                reply = await client.xread(
                    {self.key: self.position}, block=self.block_ms, count=100
                )
            except (redis.RedisError, OSError) as exc:
                if pause == 0.1:
                    log.warning("cannot read the alerts stream: %s", exc)
                # Retried until Redis answers; the streams send keep-alives meanwhile.
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            for entry in decode(reply[0][1]) if reply else []:
                self.position = entry[0]
                for subscriber in self._subscribers:
                    subscriber.offer(entry)
        # Nobody listens: the next subscriber starts from wherever the stream then ends.
        self.position = None


def newer(entry_id: str, than: str) -> bool:
    """Whether stream entry `entry_id` comes after `than`."""
    return parse_id(entry_id) > parse_id(than)
