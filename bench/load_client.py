"""The /predict load client of the benchmarks, run as a process of its own.

    python -m bench.load_client BODIES URL [URL ...] --duration S (--concurrency N | --rate R)
        [--timeout S] [--log FILE]

BODIES is a JSON list of request bodies (strings), sent in rotation. Two ways to load:

- closed loop (`--concurrency N`, bench/serve.py): N requests always in flight, each sent
  when the previous one answered: the most the server can do.
- open loop (`--rate R`, bench/soak.py): R requests started a second whatever the answers,
  as a storefront's visitors arrive: a slow server gets more requests in flight, not fewer.

With several URLs (replicas) the client balances them round robin, as a load balancer
without health checks would: a replica that refuses the connection is passed over for the
next one (nginx's default `proxy_next_upstream error`), a request that fails after it was
sent is not sent again (POST is not idempotent). Each request has `--timeout` seconds in
all; past it, it counts as a timeout.

Prints one JSON line: requests/s, p50 and p99 latency (ms, answered requests), the count
of requests that did not end in a 2xx, and (open loop) the count of requests due but not
sent because the client fell more than a second behind (the client's machine is too busy:
the achieved rate says so rather than a burst distorting the server's figures). `--log`
also writes one CSV line per request (`LOG_FIELDS`), for the soak benchmark to attribute
each outcome to a fault.
"""

import argparse
import asyncio
import csv
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Final

import aiohttp
import orjson

OK: Final = "ok"
CLIENT_ERROR: Final = "4xx"
SERVER_ERROR: Final = "5xx"
TIMEOUT: Final = "timeout"
TRANSPORT_ERROR: Final = "error"
"""Refused by every replica, or reset / closed after the request was sent."""

LOG_FIELDS: Final = (
    "sent_at",
    "latency_s",
    "outcome",
    "status",
    "version",
    "degraded",
    "replica",
    "failover",
)

_HEADERS: Final = {"content-type": "application/json"}
_MAX_IN_FLIGHT: Final = 2_000
"""Open loop: past this many unanswered requests new ones are not started (counted as
skipped): the client's own memory, not a limit the server should ever reach."""
_MAX_BEHIND_S: Final = 1.0
"""Open loop: a request due this long ago is skipped, not sent in a burst to catch up."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it was sent (unix time), how long it took and how it ended."""

    sent_at: float
    latency_s: float
    outcome: str
    status: int = 0
    version: int = -1
    """The model version the response names (200 only)."""
    degraded: bool = False
    replica: int = -1
    failover: bool = False
    """A replica refused the connection and another one answered."""


class Balancer:
    """Round robin over the replicas, passing over one that refuses the connection."""

    def __init__(self, urls: list[str], timeout_s: float, connections: int) -> None:
        self.sessions = [
            aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=connections))
            for url in urls
        ]
        self.timeout_s = timeout_s
        self._next = 0

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()

    async def send(self, body: bytes) -> Outcome:
        sent_at, began = time.time(), time.perf_counter()
        first = self._next
        self._next = (first + 1) % len(self.sessions)
        replica, failover = -1, False
        try:
            async with asyncio.timeout(self.timeout_s):
                for attempt in range(len(self.sessions)):
                    replica = (first + attempt) % len(self.sessions)
                    try:
                        async with self.sessions[replica].post(
                            "/predict", data=body, headers=_HEADERS
                        ) as response:
                            status, content = response.status, await response.read()
                    except aiohttp.ClientConnectorError:
                        failover = True
                        continue
                    break
                else:
                    return Outcome(sent_at, time.perf_counter() - began, TRANSPORT_ERROR)
        except TimeoutError:
            return Outcome(sent_at, time.perf_counter() - began, TIMEOUT, replica=replica)
        except aiohttp.ClientError:
            return Outcome(sent_at, time.perf_counter() - began, TRANSPORT_ERROR, replica=replica)
        latency = time.perf_counter() - began
        if status >= 500:
            return Outcome(sent_at, latency, SERVER_ERROR, status, replica=replica)
        if status >= 300:
            return Outcome(sent_at, latency, CLIENT_ERROR, status, replica=replica)
        # bench/serve_naive.py's answers name neither.
        answer = orjson.loads(content)
        return Outcome(
            sent_at,
            latency,
            OK,
            status,
            int(answer.get("version", -1)),
            bool(answer.get("degraded", False)),
            replica,
            failover,
        )


async def closed_loop(
    balancer: Balancer, bodies: list[bytes], duration_s: float, concurrency: int
) -> tuple[list[Outcome], int]:
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + duration_s

    async def worker(n: int) -> None:
        i = n
        while time.monotonic() < deadline:
            outcomes.append(await balancer.send(bodies[i % len(bodies)]))
            i += concurrency

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return outcomes, 0


async def open_loop(
    balancer: Balancer, bodies: list[bytes], duration_s: float, rate: float
) -> tuple[list[Outcome], int]:
    """The outcomes, and how many requests were due but never sent: the client itself
    fell more than `_MAX_BEHIND_S` behind (a starved machine), or too many were in flight."""
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    skipped = 0

    async def one(body: bytes) -> None:
        outcomes.append(await balancer.send(body))

    began = time.monotonic()
    end = began + duration_s
    i = 0
    while (now := time.monotonic()) < end:
        due = began + i / rate
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > _MAX_BEHIND_S or len(tasks) >= _MAX_IN_FLIGHT:
            skipped += 1
            i += 1
            continue
        task = asyncio.create_task(one(bodies[i % len(bodies)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        if due <= now:
            await asyncio.sleep(0)  # behind: still let the answers in
    if tasks:
        await asyncio.gather(*tasks)
    return outcomes, skipped


def summary(outcomes: list[Outcome], elapsed_s: float, skipped: int) -> list[float]:
    """[requests/s, p50 ms, p99 ms, requests that did not end in a 2xx, requests skipped]."""
    latencies = sorted(o.latency_s for o in outcomes if o.status)
    errors = sum(o.outcome != OK for o in outcomes)

    def q(f: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(f * len(latencies)))] * 1000 if latencies else 0
        )

    return [len(outcomes) / elapsed_s, q(0.5), q(0.99), errors, skipped]


def write_log(path: Path, outcomes: list[Outcome]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(LOG_FIELDS)
        writer.writerows(astuple(o) for o in sorted(outcomes, key=lambda o: o.sent_at))


def read_log(path: Path) -> list[Outcome]:
    with path.open(newline="") as source:
        rows = csv.DictReader(source)
        return [
            Outcome(
                float(row["sent_at"]),
                float(row["latency_s"]),
                row["outcome"],
                int(row["status"]),
                int(row["version"]),
                row["degraded"] == "True",
                int(row["replica"]),
                row["failover"] == "True",
            )
            for row in rows
        ]


async def run(args: argparse.Namespace) -> None:
    bodies = [b.encode() for b in orjson.loads(Path(args.bodies).read_bytes())]
    in_flight = args.concurrency or int(args.rate * args.timeout) + 16
    balancer = Balancer(args.urls, args.timeout, min(in_flight, _MAX_IN_FLIGHT))
    began = time.monotonic()
    try:
        if args.concurrency:
            outcomes, skipped = await closed_loop(balancer, bodies, args.duration, args.concurrency)
        else:
            outcomes, skipped = await open_loop(balancer, bodies, args.duration, args.rate)
    finally:
        await balancer.close()
    elapsed = time.monotonic() - began
    if args.log:
        write_log(Path(args.log), outcomes)
    print(orjson.dumps(summary(outcomes, elapsed, skipped)).decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bodies", help="JSON list of request bodies")
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--duration", type=float, required=True)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--concurrency", type=int, help="closed loop: requests in flight")
    mode.add_argument("--rate", type=float, help="open loop: requests started a second")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds a request may take")
    parser.add_argument("--log", default=None, help="write every request's outcome here (CSV)")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # the default loop only costs the client some CPU
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
