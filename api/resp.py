"""One multiplexed asyncio connection to Redis, for the request path's read pipelines.

Profiled at 100 candidates, the blocking redis-py round trip was half of the event loop's
time: a third waiting for Redis (no other request could run meanwhile) and the rest in
redis-py's per-reply Python code. Here every request writes its packed commands to one
shared connection and awaits a future; an asyncio protocol feeds what arrives to one
hiredis reader (C) and hands each request its replies, in order: Redis answers the
commands of a connection in the order they were sent. While Redis works, the loop serves
other requests.

Read-only commands only: a timeout or a broken connection fails every request waiting on
it and drops the connection (the next request connects anew), so nothing is ever
half-applied. Connection settings (host, port, unix socket, TLS, AUTH, database) come
from the Redis URL, parsed by redis-py; the password from it or HEADRACE_REDIS_PASSWORD.

Behind Redis Sentinel, each (re)connect asks the sentinels where the primary is and then
checks with ROLE that the server it reached is the primary: a failover drops the old
connection, and the next request lands on the promoted replica.
"""

import asyncio
import ssl
from collections import deque
from itertools import islice
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url

from learner.redisconn import async_primary, async_sentinels


class RespError(ConnectionError):
    """Redis did not answer the pipeline (refused, reset, timed out, AUTH failed)."""


def pack(*args: str | bytes) -> bytes:
    """One command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


_PENDING = object()
"""What the reader's gets() returns until a whole reply has arrived (its default, False,
equals an integer reply 0)."""


class _Replies(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(notEnoughData=_PENDING)
        # uvloop's transports are not asyncio.Transport subclasses, hence Any.
        self.transport: Any = None
        # Requests in the order they were written: (replies expected, replies, future,
        # deadline in loop time).
        self.waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]], float]] = deque()
        self.lost: Exception | None = None
        # One timer for every request's deadline: a timer per request (made, then
        # cancelled) was a measurable share of a request's CPU.
        self.watchdog: asyncio.TimerHandle | None = None

    def expect(self, n: int, future: "asyncio.Future[list[Any]]", deadline: float) -> None:
        """Wait for the next `n` replies, failing `future` with TimeoutError at `deadline`
        (loop time) unless they have all arrived by then."""
        self.waiting.append((n, [], future, deadline))
        if self.watchdog is None:
            self.watchdog = future.get_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Fail the requests past their deadline; come back at the next one's."""
        self.watchdog = None
        if not self.waiting:
            return
        loop = self.waiting[0][2].get_loop()
        now = loop.time()
        # Written in order with one timeout: deadlines only grow along the queue.
        for _, _, future, deadline in self.waiting:
            if deadline > now:
                self.watchdog = loop.call_at(deadline, self._expire)
                return
            if not future.done():
                future.set_exception(TimeoutError())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        # The replies that have arrived, taken in C: a Python step per reply cost 5 us of a
        # 100-candidate request.
        arrived = iter(self.reader.gets, _PENDING)
        waiting = self.waiting
        while waiting:
            n, replies, future, _ = waiting[0]
            replies.extend(islice(arrived, n - len(replies)))
            if len(replies) < n:
                return
            waiting.popleft()
            if not future.done():
                future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or RespError("Redis closed the connection")
        self.fail(self.lost)

    def fail(self, exc: Exception) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            _, _, future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(RespError(f"{type(exc).__name__}: {exc}"))


class RespPipeline:
    """Sends batches of commands on one shared connection; each caller gets its replies."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        *,
        password: str | None = None,
        sentinels: list[tuple[str, int]] | None = None,
        service: str = "",
    ) -> None:
        self._params = parse_url(url)
        if password is not None and self._params.get("password") is None:
            self._params["password"] = password
        self._sentinel = (
            async_sentinels(sentinels, url, self._params.get("password"), timeout_s)
            if sentinels
            else None
        )
        self._service = service
        self._timeout = timeout_s
        self._conn: _Replies | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, packed: bytes, n: int) -> list[Any]:
        """The `n` replies to the `n` commands in `packed` (error replies as ReplyError)."""
        conn = self._conn
        if conn is None or conn.lost is not None:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        # The connection's one timer fails the future at its deadline: asyncio.wait_for
        # adds a second future and its callbacks, a timer per request costs its making
        # and cancelling, both measurable at thousands of requests a second.
        conn.expect(n, future, loop.time() + self._timeout)
        conn.transport.write(packed)
        try:
            return await future
        except TimeoutError:
            self._drop(conn, RespError(f"no answer within {self._timeout} s"))
            raise RespError(f"Redis did not answer within {self._timeout} s") from None

    def close(self) -> None:
        if self._conn is not None:
            self._drop(self._conn, RespError("closed"))

    def _drop(self, conn: _Replies, exc: Exception) -> None:
        conn.fail(exc)
        conn.lost = exc
        if conn.transport is not None:
            conn.transport.abort()
        if self._conn is conn:
            self._conn = None

    async def _connect(self) -> _Replies:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and self._conn.lost is None:
                return self._conn
            try:
                conn = await asyncio.wait_for(self._open(), self._timeout)
            except (OSError, TimeoutError) as exc:
                raise RespError(f"cannot connect to Redis: {type(exc).__name__}: {exc}") from exc
            self._conn = conn
            return conn

    async def _primary(self) -> tuple[str, int]:
        assert self._sentinel is not None
        return await async_primary(self._sentinel, self._service)

    async def _open(self) -> _Replies:
        loop = asyncio.get_running_loop()
        params = self._params
        tls = (
            ssl.create_default_context()
            if params.get("connection_class") is SSLConnection
            else None
        )
        if self._sentinel is not None:
            # rediss with sentinels: the primary they name is reached over TLS (its
            # certificate checked against the name they gave), as redis-py's clients do.
            host, port = await self._primary()
            _, conn = await loop.create_connection(_Replies, host, port, ssl=tls)
        elif "path" in params:
            _, conn = await loop.create_unix_connection(_Replies, params["path"])
        else:
            _, conn = await loop.create_connection(
                _Replies, params.get("host", "127.0.0.1"), params.get("port", 6379), ssl=tls
            )
        # RESP2 on purpose: hiredis builds a RESP3 map (HGETALL) ~4x slower than an array.
        setup: list[bytes] = []
        if params.get("password") is not None:
            user = params.get("username")
            setup.append(pack("AUTH", *([user] if user else []), params["password"]))
        if params.get("db"):
            setup.append(pack("SELECT", str(params["db"])))
        if self._sentinel is not None:
            # The sentinels' answer may be seconds old: a demoted primary must not serve.
            setup.append(pack("ROLE"))
        if setup:
            future: asyncio.Future[list[Any]] = loop.create_future()
            conn.expect(len(setup), future, loop.time() + self._timeout)
            conn.transport.write(b"".join(setup))
            replies = await future
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    conn.transport.abort()
                    raise OSError(f"Redis refused the connection set-up: {reply}")
            if self._sentinel is not None and replies[-1][0] != b"master":
                conn.transport.abort()
                raise OSError(f"the server the sentinels named is a {replies[-1][0]!r}")
        return conn
