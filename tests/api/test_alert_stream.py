"""The live alert streams against a real `headrace serve` (uvicorn): many open streams
share one Redis reader, one past HEADRACE_MAX_ALERT_STREAMS is refused at once, a stream
that closes gives its place back, and a client resumes after its Last-Event-ID."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from api.alertfeed import Subscriber
from guards.alerts import Alert
from learner import alertstore
from learner.layout import alerts_key
from stream.settings import StreamSettings
from tests.api.helpers import ApiProcess, api_env
from tests.support import WAIT_S

pytestmark = pytest.mark.integration

CAP = 40
"""More streams than a worker's default thread pool has threads (at most 32): each stream
used to hold one for every second it waited."""


def threads(pid: int) -> int:
    """How many threads process `pid` runs now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for process {pid}")


@pytest.fixture
def api(settings: StreamSettings, tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(api_env(settings, max_alert_streams=CAP), tmp_path / "api.log")
    try:
        process.wait_listening()
        yield process
    finally:
        process.close()


def _alert(n: int) -> Alert:
    return Alert.make(
        n=n,
        ts=1_767_225_600.0 + n,
        model="main",
        variant="main",
        detector="psi",
        signal="feature:price",
        value=0.5,
        threshold=0.25,
        window=500,
        message=f"alert {n}",
    )


def _raise(client: redis.Redis, settings: StreamSettings, *numbers: int) -> None:
    pipe = client.pipeline()
    alertstore.append(pipe, settings.key_prefix, [_alert(n) for n in numbers])
    pipe.execute()


class Stream:
    """An open /drift/alerts/stream, read line by line."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines

    @classmethod
    async def open(
        cls, client: httpx.AsyncClient, stack: AsyncExitStack, last_id: str | None = None
    ) -> "Stream":
        headers = {"Last-Event-ID": last_id} if last_id else {}
        response = await stack.enter_async_context(
            client.stream("GET", "/drift/alerts/stream", headers=headers)
        )
        assert response.status_code == 200, response.status_code
        stream = cls(response.aiter_lines())
        # The first line is this comment, sent before the feed has read anything from Redis.
        first = await asyncio.wait_for(anext(stream.lines), WAIT_S)
        assert first == ": headrace drift alerts"
        return stream

    async def alerts(self, n: int, timeout: float = WAIT_S) -> list[tuple[str, str]]:
        """The next `n` alerts: (id, message)."""
        found: list[tuple[str, str]] = []
        entry_id = ""

        async def read() -> None:
            nonlocal entry_id
            async for line in self.lines:
                if line.startswith("id: "):
                    entry_id = line[4:]
                elif line.startswith("data: "):
                    found.append((entry_id, orjson.loads(line[6:])["message"]))
                    if len(found) == n:
                        return

        await asyncio.wait_for(read(), timeout)
        return found


def test_streams_past_the_cap_are_refused_at_once_and_the_open_ones_share_alerts(
    api: ApiProcess, settings: StreamSettings, redis_client: redis.Redis
) -> None:
    async def run() -> None:
        limits = httpx.Limits(max_connections=CAP + 10, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(base_url=api.url, timeout=10, limits=limits) as client,
            AsyncExitStack() as stack,
        ):
            idle = threads(api.proc.pid)
            streams = [await Stream.open(client, stack) for _ in range(CAP)]
            # An open stream costs a queue, not a thread of the worker's pool: with one
            # each, the requests below would wait for a stream to let go of one.
            held = threads(api.proc.pid) - idle
            assert held < CAP // 4, f"{CAP} open streams hold {held} more threads"

            refused = await client.get("/drift/alerts/stream")
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert refused.headers["retry-after"]
            listed = await client.get("/drift/alerts")
            assert listed.status_code == 200

            # One read of Redis, every stream told.
            await asyncio.to_thread(_raise, redis_client, settings, 1, 2)
            received = await asyncio.gather(*(s.alerts(2) for s in streams))
            assert all([m for _, m in got] == ["alert 1", "alert 2"] for got in received)

            # A stream that ends gives its place back: the next client gets it at once.
            await stack.aclose()
            deadline = time.monotonic() + WAIT_S
            while True:
                async with client.stream("GET", "/drift/alerts/stream") as response:
                    if response.status_code == 200:
                        first = await asyncio.wait_for(anext(response.aiter_lines()), WAIT_S)
                        assert first == ": headrace drift alerts"
                        break
                    assert response.status_code == 503
                assert time.monotonic() < deadline, "closed streams kept their places"
                await asyncio.sleep(0.05)

    asyncio.run(run())


def test_a_stream_resumes_after_its_last_event_id(
    api: ApiProcess, settings: StreamSettings, redis_client: redis.Redis
) -> None:
    _raise(redis_client, settings, 1, 2, 3)
    first_id = redis_client.xrange(alerts_key(settings.key_prefix))[0][0].decode()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client, AsyncExitStack() as s:
            # A new stream starts from now; one resuming gets what it missed first.
            fresh = await Stream.open(client, s)
            resumed = await Stream.open(client, s, last_id=first_id)
            assert [m for _, m in await resumed.alerts(2)] == ["alert 2", "alert 3"]
            await asyncio.to_thread(_raise, redis_client, settings, 4)
            assert [m for _, m in await resumed.alerts(1)] == ["alert 4"]
            got = await fresh.alerts(1)
            assert [m for _, m in got] == ["alert 4"]
            # Resuming from the newest id misses nothing and repeats nothing.
            await asyncio.to_thread(_raise, redis_client, settings, 5)
            caught_up = await Stream.open(client, s, last_id=got[0][0])
            assert [m for _, m in await caught_up.alerts(1)] == ["alert 5"]

    asyncio.run(run())


def test_a_subscriber_that_falls_behind_is_dropped_not_waited_for() -> None:
    async def run() -> None:
        subscriber = Subscriber("1-0", queue_size=2)
        for n in range(3):
            subscriber.offer((f"{n + 2}-0", {"message": f"alert {n}"}))
        # The reader never blocks on a slow client: it marks it, and its stream ends.
        assert subscriber.dropped
        assert subscriber.queue.qsize() == 2

    asyncio.run(run())


def test_an_alert_and_the_record_that_ends_it_carry_the_test_in_the_list_and_the_stream(
    api: ApiProcess, settings: StreamSettings, redis_client: redis.Redis
) -> None:
    started = Alert.make(
        n=40,
        ts=1_767_225_700.0,
        model="main",
        variant="main",
        detector="page_hinkley",
        signal="loss",
        value=0.3,
        threshold=0.2,
        window=800,
        message="page_hinkley: the loss rose",
        test_statistic=9.5,
        test_threshold=7.0,
    )
    ended = started.end(ts=1_767_225_760.0, value=0.15, threshold=0.2, window=800, message="over")

    # A new stream starts where the feed's reader finds the stream's end, which may be
    # after the first line has gone out: an alert raised in between would come before
    # it. A client that must miss nothing resumes from the newest id it knows.
    newest = redis_client.xrevrange(alerts_key(settings.key_prefix), count=1)
    known = newest[0][0].decode() if newest else "0-0"

    async def run() -> None:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client, AsyncExitStack() as s:
            stream = await Stream.open(client, s, last_id=known)
            pipe = redis_client.pipeline()
            alertstore.append(pipe, settings.key_prefix, [started, ended])
            await asyncio.to_thread(pipe.execute)
            assert [m for _, m in await stream.alerts(2)] == [started.message, "over"]
            listed = (await client.get("/drift/alerts")).json()["alerts"]
            first, second = listed[-2:]
            assert (first["test_statistic"], first["test_threshold"], first["ends"]) == (
                9.5,
                7.0,
                None,
            )
            assert (second["ends"], second["ts"]) == (started.id, 1_767_225_760.0)
            assert Alert.from_dict({k: v for k, v in second.items() if k != "stream_id"}) == ended

    asyncio.run(run())
