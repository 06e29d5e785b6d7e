"""/predict's latency while the model learns: one model version against a new one every
`--every` seconds, and which part of the difference each suspect takes.

    .venv/bin/python bench/serve_tail.py [--duration 10] [--rounds 3] [--every 0.25]
        [--rate 1000] [--candidates 100] [--port-base N] [--compare CHECKOUT]
        [--compare-learner CHECKOUT] [--profile FILE]

Starts its own Redis, trains the logistic model and publishes it (as bench/serve.py),
runs `headrace serve` with one worker (and, with `--compare`, the API of another
checkout as `before`), then loads each with wrk (16 connections, the same bodies) in
four modes, one after the other in every round:

- `one version`: nobody publishes;
- `cpu only`: a live learner (bench/live_publisher.py: `--rate` records a second,
  published every `--every` seconds) publishes to a second Redis of its own: it takes the
  CPU a learner takes, but neither the API nor the API's Redis sees it;
- `redis only`: the same learner publishes to the API's Redis under another key prefix:
  Redis also runs its transactions, the API does not load them;
- `live`: it publishes the shard the API serves: each version is also loaded and
  swapped in by the API.

Each mode adds one suspect to the one before, so the p99 each adds is that suspect's. The
three learners are processes of their own, stopped (SIGSTOP) outside their mode. Per mode
it prints req/s, p50, p99, requests per CPU-second, the learner's CPU share and versions,
the API's model loads (count, mean and longest seconds from
headrace_api_model_load_seconds) and the longest Redis command of the run (SLOWLOG) and
latency event (LATENCY LATEST: AOF writes, forks).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import redis
from pydantic import SecretStr

from bench.live_publisher import LiveLearner
from bench.procstat import cpu_s
from bench.serve import measure, median_run, per_cpu
from bench.serve_check import same_answers
from bench.serve_load import Result
from bench.serve_setup import api_env, bench_redis, bodies, ports_from, start, train
from headrace.devstack import redis_local
from headrace.sim.simulator import SimulatorConfig
from learner.redisconn import connect
from stream.settings import StreamSettings

_LOADS = 'headrace_api_model_load_seconds_{}{{model="main"}}'


@dataclass
class Run:
    result: Result
    learner_cpu: float = 0.0
    loads: int = 0
    load_ms: float = 0.0
    exec_ms: float = 0.0
    redis_ms: float = 0.0
    latency_ms: float = 0.0


def load_counts(url: str) -> tuple[float, float]:
    found = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(_LOADS[:20]):
            name, _, value = line.partition(" ")
            found[name] = float(value)
    return found.get(_LOADS.format("count"), 0.0), found.get(_LOADS.format("sum"), 0.0)


def redis_worst(client: redis.Redis) -> tuple[float, float]:
    """The longest command (SLOWLOG) and latency event (AOF write, fork ...) since reset, ms."""
    slow = client.slowlog_get(1024)
    worst = max((entry["duration"] for entry in slow), default=0) / 1000
    events = client.execute_command("LATENCY", "LATEST")
    return worst, float(max((event[3] for event in events), default=0))


def exec_stats(client: redis.Redis) -> tuple[int, int]:
    """Transactions Redis ran (EXEC) and the microseconds it spent in them, so far."""
    found = client.info("commandstats").get("cmdstat_exec", {})
    return int(found.get("calls", 0)), int(found.get("usec", 0))


def reset_redis(client: redis.Redis) -> None:
    client.config_set("slowlog-log-slower-than", 1000)
    client.config_set("slowlog-max-len", 1024)
    client.slowlog_reset()
    client.config_set("latency-monitor-threshold", 1)
    client.execute_command("LATENCY", "RESET")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per app and mode (median)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--events", type=int, default=40_000, help="records learned first")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--every", type=float, default=0.25, help="seconds between versions")
    parser.add_argument("--rate", type=float, default=1_000.0, help="records learned a second")
    parser.add_argument("--python-client", action="store_true", help="asyncio client, not wrk")
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="also run the API of another checkout, as `before`, in every mode",
    )
    parser.add_argument(
        "--compare-learner",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="also the mode `redis, before`: `redis only` with another checkout's learner",
    )
    parser.add_argument(
        "--port-base", type=int, default=0, help="Redis, the learner's Redis, api, before"
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="py-spy's collapsed stacks of the API's last `live` run go to this file",
    )
    args = parser.parse_args()
    next_port = ports_from(args.port_base, 4)
    tmp, stream, signer = bench_redis(next_port())
    elsewhere = StreamSettings(
        redis_url=f"redis://127.0.0.1:{next_port()}/0",
        redis_password=SecretStr(stream.redis_password_value or ""),
        stack_dir=tempfile.mkdtemp(prefix="headrace-bench-"),
        key_prefix=stream.key_prefix,
    )
    # Each mode's learner has a state of its own to continue from.
    publishers: dict[str, tuple[StreamSettings, Path | None]] = {
        "cpu only": (elsewhere, None),
        "redis only": (stream.model_copy(update={"key_prefix": "other"}), None),
        "live": (stream, None),
    }
    if args.compare_learner is not None:
        before = stream.model_copy(update={"key_prefix": "before"})
        publishers["redis, before"] = (before, args.compare_learner.resolve())
    modes = ["one version", *publishers]
    start_at = datetime.now(UTC) - timedelta(seconds=args.events / 12 + 300)
    items = args.candidates * 2
    config = SimulatorConfig(
        seed=3, count=args.events, n_users=args.users, n_items=items, start=start_at
    )
    redis_pid = redis_local.start(stream)
    redis_local.start(elsewhere)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    learners: dict[str, LiveLearner] = {}
    try:
        for where, _ in publishers.values():
            train(where, config, signer)
        env = api_env(stream, signer, max_candidates=args.candidates)
        urls = {}
        serve = [sys.executable, "-m", "headrace.cli", "serve", "--port"]
        port = next_port()
        procs["api"] = start([*serve, str(port)], env, tmp / "api.log", port)
        urls["api"] = f"http://127.0.0.1:{port}"
        if args.compare is not None:
            port = next_port()
            checkout = args.compare.resolve()
            before_env = {**env, "PYTHONPATH": str(checkout)}
            procs["before"] = start(
                [*serve, str(port)], before_env, tmp / "before.log", port, cwd=checkout
            )
            urls["before"] = f"http://127.0.0.1:{port}"
        load = bodies(config, args.candidates)
        gap = same_answers(list(urls.values()), load)
        print(f"{', '.join(urls)} rank {len(load)} bodies alike (scores within {gap:.1g})")
        for mode, (where, code) in publishers.items():
            learners[mode] = LiveLearner(
                where,
                signer,
                start_at,
                every=args.every,
                rate=args.rate,
                users=args.users,
                items=items,
                checkout=code,
            )
        client: redis.Redis = connect(stream)
        runs: dict[tuple[str, str], list[Run]] = {}
        for _ in range(args.rounds):
            # Rounds alternate modes and apps, so a burst of other work on a shared box
            # does not land on one of them only; the report takes the median round.
            for mode in modes:
                for name, proc in procs.items():
                    profiled = args.profile is not None and (name, mode) == ("api", "live")
                    found = run_one(
                        urls[name],
                        proc.pid,
                        redis_pid,
                        load,
                        args,
                        tmp,
                        learners.get(mode),
                        client,
                        profiled,
                    )
                    runs.setdefault((name, mode), []).append(found)
        done = {mode: live.close() for mode, live in learners.items()}
        learners.clear()
        report(runs, modes, args, os.getloadavg())
        for mode, stats in done.items():
            print(
                f"learner of {mode!r}: {stats.get('versions', 0)} versions, "
                f"{stats.get('records', 0):,} records learned"
            )
    finally:
        for live in learners.values():
            live.close()
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
        redis_local.stop(elsewhere)
        redis_local.stop(stream)


def run_one(
    url: str,
    pid: int,
    redis_pid: int,
    load: list[bytes],
    args: argparse.Namespace,
    tmp: Path,
    publisher: LiveLearner | None,
    client: redis.Redis,
    profiled: bool = False,
) -> Run:
    if publisher is not None:
        publisher.resume()
    reset_redis(client)
    count0, sum0 = load_counts(url)
    exec0 = exec_stats(client)
    cpu0 = cpu_s(publisher.pid) if publisher is not None else 0.0
    result = measure(url, pid, redis_pid, load, args, tmp, profiled)
    cpu1 = cpu_s(publisher.pid) if publisher is not None else 0.0
    if publisher is not None:
        publisher.pause()
    exec1 = exec_stats(client)
    count1, sum1 = load_counts(url)
    redis_ms, latency_ms = redis_worst(client)
    loads = int(count1 - count0)
    execs = exec1[0] - exec0[0]
    # The warm-up of measure() runs too: CPU over the run and its warm-up.
    wall = args.duration + min(2.0, args.duration)
    return Run(
        result,
        learner_cpu=(cpu1 - cpu0) / wall,
        loads=loads,
        load_ms=1000 * (sum1 - sum0) / loads if loads else 0.0,
        exec_ms=(exec1[1] - exec0[1]) / 1000 / execs if execs else 0.0,
        redis_ms=redis_ms,
        latency_ms=latency_ms,
    )


def report(
    runs: dict[tuple[str, str], list[Run]],
    modes: list[str],
    args: argparse.Namespace,
    load: tuple[float, ...],
) -> None:
    print(
        f"\n{args.candidates} candidates, concurrency {args.concurrency}, {args.duration:.0f} s "
        f"per run, median of {args.rounds} round(s), one worker; the learner learns "
        f"{args.rate:,.0f} records/s and publishes every {args.every} s; load average "
        f"{load[0]:.2f} at the end"
    )
    print(
        f"{'app':>6} {'mode':>13} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'req/cpu-s':>9} "
        f"{'others':>6} {'learner':>7} {'loads':>5} {'load ms':>7} {'exec ms':>7} "
        f"{'redis ms':>8} {'aof/lat ms':>10} {'p99 vs one':>10}"
    )
    names = list(dict.fromkeys(name for name, _ in runs))
    for name in names:
        base = median_run([r.result for r in runs[(name, modes[0])]])
        for mode in modes:
            found = runs[(name, mode)]
            chosen = median_run([r.result for r in found])
            run = next(r for r in found if r.result is chosen)
            r = run.result
            print(
                f"{name:>6} {mode:>13} {r.rps:>7,.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
                f"{per_cpu(r):>9,.0f} {r.others_cpu:>6.0%} {run.learner_cpu:>7.0%} "
                f"{run.loads:>5} {run.load_ms:>7.2f} {run.exec_ms:>7.2f} {run.redis_ms:>8.1f} "
                f"{run.latency_ms:>10.0f} {r.p99_ms / max(base.p99_ms, 1e-9):>9.2f}x"
            )
    if "before" in names:
        for mode in modes:
            api = median_run([r.result for r in runs[("api", mode)]])
            before = median_run([r.result for r in runs[("before", mode)]])
            print(
                f"{mode:>13}: api against before: p99 {api.p99_ms:.2f} against "
                f"{before.p99_ms:.2f} ms, req/cpu-s {per_cpu(api) / per_cpu(before):.2f}x"
            )
    print(
        "others: CPU of other processes (cores); learner: the learner's CPU (a core's share); "
        "loads: versions the API loaded in the run, load ms their mean; exec ms: Redis's mean "
        "time in one transaction (a publish: every request waits meanwhile); redis ms: its "
        "longest command (SLOWLOG, over 1 ms); aof/lat ms: its longest latency event "
        "(LATENCY LATEST: AOF writes, commands)"
    )


if __name__ == "__main__":
    main()
