"""The caches on a realistic traffic mix: hit rates and speed-up beside the uncached API.

    .venv/bin/python bench/serve_cache.py [--duration 10] [--rounds 3] [--candidates 100]
        [--anonymous 0.3] [--zipf 1.1] [--pages 300] [--publish-every 0.25] [--rate 1000]
        [--port-base N]

Starts its own Redis, trains and publishes the logistic model (as bench/serve.py), then
runs three `headrace serve` processes with one worker each: no cache, the item cache, and
both caches (HEADRACE_ITEM_CACHE, HEADRACE_RESPONSE_CACHE; HEADRACE_CACHE_MAX_AGE_S as
given), and the naive app (bench/serve_naive.py). The traffic mix: users drawn from a
Zipf law over the simulator's users (rank 1 the most frequent), with a share of
anonymous and new users (ids the learner never saw), and result pages (a query, its
context and its candidates) drawn from a Zipf law over `--pages` pages, independently.
Before measuring it checks all four return the same items and scores (to 1e-6: a reused
answer was computed up to the bound earlier). Each round loads each server in turn (wrk,
16 connections; rounds alternate the servers) and prints req/s, p50, p99, requests per
CPU-second, the hit rates from each API's /metrics, and the ratios to the uncached API
and to the naive app. During the runs a live learner (bench/live_publisher.py, a process
of its own) learns `--rate` records a second of the same stream and publishes them as a new
model version every `--publish-every` seconds, as a learner with HEADRACE_PUBLISH_EVERY_MS
does: each version ends both caches' generations.
"""

import argparse
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np
import orjson

from bench.live_publisher import LiveLearner
from bench.serve import measure, median_run, per_cpu
from bench.serve_check import same_answers
from bench.serve_load import Result
from bench.serve_setup import api_env, bench_redis, ports_from, start, train
from headrace.devstack import redis_local
from headrace.sim.simulator import SimulatorConfig, world

SERVERS = {
    "no cache": {},
    "item cache": {"HEADRACE_ITEM_CACHE": "true"},
    "both caches": {"HEADRACE_ITEM_CACHE": "true", "HEADRACE_RESPONSE_CACHE": "true"},
}


def zipf_ranks(rng: np.random.Generator, n: int, s: float, size: int) -> np.ndarray:
    """`size` draws of ranks 0..n-1 with P(rank r) proportional to 1 / (r + 1) ** s."""
    weights = 1.0 / np.arange(1, n + 1) ** s
    return rng.choice(n, size=size, p=weights / weights.sum())


def mix(config: SimulatorConfig, args: argparse.Namespace) -> tuple[list[bytes], float]:
    """The bodies in rotation, and the share of them whose user is anonymous or new."""
    store = world(config)
    rng = np.random.default_rng(7)
    pages = []
    for _ in range(args.pages):
        request = store.request_for(int(rng.integers(0, config.n_users)), rng, k=args.candidates)
        ctx = request.context
        pages.append(
            {
                "context": {"query": ctx.query, "device": ctx.device, "page": ctx.page},
                "candidates": [
                    {
                        "item_id": c.item_id,
                        "price": c.item.price,
                        "category": c.item.category,
                        **({"brand": c.item.brand} if c.item.brand is not None else {}),
                    }
                    for c in request.candidates
                ],
            }
        )
    # Users' popularity order is a shuffle of the simulator's users, not their numbering.
    users = rng.permutation(config.n_users)
    page_of = zipf_ranks(rng, args.pages, args.zipf, args.bodies)
    user_of = zipf_ranks(rng, config.n_users, args.zipf, args.bodies)
    anonymous = rng.random(args.bodies) < args.anonymous
    bodies = []
    for n in range(args.bodies):
        user = f"anon-{n}" if anonymous[n] else store.user_ids[int(users[user_of[n]])]
        bodies.append(orjson.dumps({"user_id": user, **pages[int(page_of[n])]}))
    return bodies, float(anonymous.mean())


def naive_argv(port: int) -> list[str]:
    """bench/serve_naive.py under uvicorn, as bench/serve.py runs it."""
    return [
        *(sys.executable, "-m", "uvicorn", "bench.serve_naive:create", "--factory"),
        *("--port", str(port), "--loop", "uvloop", "--http", "httptools"),
        *("--no-access-log", "--log-level", "warning"),
    ]


def cache_counts(url: str) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("headrace_api_cache_total{"):
            labels, value = line[len("headrace_api_cache_total{") :].split("} ")
            cache, result = (part.split("=")[1].strip('"') for part in labels.split(","))
            counts[(cache, result)] = float(value)
    return counts


def rate(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], cache: str
) -> str:
    hits = after.get((cache, "hit"), 0.0) - before.get((cache, "hit"), 0.0)
    misses = after.get((cache, "miss"), 0.0) - before.get((cache, "miss"), 0.0)
    return f"{hits / (hits + misses):.0%}" if hits + misses else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=1, help="runs per server (median)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--events", type=int, default=40_000, help="simulator records to learn")
    parser.add_argument("--users", type=int, default=2_000, help="simulator users")
    parser.add_argument("--items", type=int, default=5_000, help="simulator items")
    parser.add_argument("--pages", type=int, default=300, help="distinct result pages")
    parser.add_argument("--zipf", type=float, default=1.1, help="exponent of both Zipf laws")
    parser.add_argument("--anonymous", type=float, default=0.3, help="share of new users")
    parser.add_argument("--bodies", type=int, default=1_000, help="requests in rotation")
    parser.add_argument("--max-age", type=float, default=1.0, help="HEADRACE_CACHE_MAX_AGE_S")
    parser.add_argument(
        "--publish-every",
        type=float,
        default=0.25,
        help="seconds between model versions during the runs, as a live learner (0: one)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1_000.0,
        help="records the live learner learns a second between its publishes",
    )
    parser.add_argument("--python-client", action="store_true", help="asyncio client, not wrk")
    parser.add_argument(
        "--port-base", type=int, default=0, help="Redis, the 3 APIs, the naive app (N to N+4)"
    )
    args = parser.parse_args()
    args.profile = None
    next_port = ports_from(args.port_base)
    tmp, stream, signer = bench_redis(next_port())
    start_at = datetime.now(UTC) - timedelta(seconds=args.events / 12 + 300)
    config = SimulatorConfig(
        seed=3, count=args.events, n_users=args.users, n_items=args.items, start=start_at
    )
    redis_pid = redis_local.start(stream)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    live: LiveLearner | None = None
    try:
        first = train(stream, config, signer)
        if args.publish_every > 0:
            live = LiveLearner(
                stream,
                signer,
                start_at,
                every=args.publish_every,
                rate=args.rate,
                users=args.users,
                items=args.items,
            )
        load, anonymous = mix(config, args)
        cadence = (
            f"a new model version every {args.publish_every} s during the runs"
            if args.publish_every > 0
            else "one model version throughout"
        )
        print(
            f"model trained on {args.events:,} records; {cadence}; logs in {tmp}\n"
            f"traffic mix: users and result pages each Zipf-distributed (exponent {args.zipf}) "
            f"over {args.users:,} users and {args.pages} pages of {args.candidates} candidates "
            f"from {args.items:,} items; {anonymous:.0%} of requests from anonymous or new "
            f"users; {len(load):,} requests in rotation"
        )
        env = api_env(stream, signer, max_candidates=args.candidates, cache_max_age_s=args.max_age)
        urls = {}
        for name, extra in SERVERS.items():
            port = next_port()
            argv = [sys.executable, "-m", "headrace.cli", "serve", "--port", str(port)]
            log = tmp / f"{name.replace(' ', '-')}.log"
            procs[name] = start(argv, {**env, **extra}, log, port)
            urls[name] = f"http://127.0.0.1:{port}"
        port = next_port()
        procs["naive"] = start(naive_argv(port), env, tmp / "naive.log", port)
        urls["naive"] = f"http://127.0.0.1:{port}"
        gap = same_answers(list(urls.values()), load[:200])
        print(f"all four return the same items, order and scores (within {gap:.1g})")
        if live is not None:
            live.resume()
        runs: dict[str, list[tuple[Result, str, str]]] = {}
        for _ in range(args.rounds):
            for name, proc in procs.items():
                before = cache_counts(urls[name])
                result = measure(urls[name], proc.pid, redis_pid, load, args, tmp)
                after = cache_counts(urls[name])
                rates = (rate(before, after, "item"), rate(before, after, "response"))
                runs.setdefault(name, []).append((result, *rates))
        if live is not None:
            stats = live.close()
            live = None
            last, learned = stats.get("last_version", first), stats.get("records", 0)
            print(
                f"model versions {first} to {last} served during the runs "
                f"({learned:,} records learned meanwhile)"
            )
        report(runs, args)
    finally:
        if live is not None:
            live.close()
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
        redis_local.stop(stream)


def report(runs: dict[str, list[tuple[Result, str, str]]], args: argparse.Namespace) -> None:
    print(
        f"\nconcurrency {args.concurrency}, {args.duration:.0f} s per run, median of "
        f"{args.rounds} round(s), one worker each, cache max age {args.max_age} s"
    )
    print(
        f"{'server':>12} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} {'cpu':>5} "
        f"{'others':>6} {'req/cpu-s':>9} {'item hits':>9} {'resp hits':>9} {'speed-up':>14}"
    )
    chosen = {name: median(found) for name, found in runs.items()}
    base, naive = chosen["no cache"][0], chosen["naive"][0]
    for name, (r, item, response) in chosen.items():
        speed = f"{r.rps / base.rps:.2f}x, {per_cpu(r) / per_cpu(base):.2f}x"
        against = f"{r.rps / naive.rps:.1f}x, {per_cpu(r) / per_cpu(naive):.1f}x"
        print(
            f"{name:>12} {r.rps:>8,.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.errors:>7} "
            f"{r.server_cpu:>5.0%} {r.others_cpu:>6.0%} {per_cpu(r):>9,.0f} {item:>9} "
            f"{response:>9} {speed:>14} {against:>12}"
        )
    print(
        "speed-up: req/s and req/cpu-s against the uncached API; vs naive: the same against "
        "bench/serve_naive.py (medians of the rounds)"
    )


def median(found: list[tuple[Result, str, str]]) -> tuple[Result, str, str]:
    best = median_run([r for r, _, _ in found])
    return next(run for run in found if run[0] is best)


if __name__ == "__main__":
    main()
