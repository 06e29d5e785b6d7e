"""/predict throughput and latency: headrace's API against the naive FastAPI app.

    .venv/bin/python bench/serve.py [--duration 10] [--candidates 1,100,1000] [--port-base N]
        [--cascade fm:50 | fm:10:10] [--compare CHECKOUT] [--granian]

Starts its own Redis (a free 127.0.0.1 port, or --port-base; a temporary folder), trains
the learner's logistic model on a simulator stream and publishes it there, then runs both
apps as uvicorn subprocesses with one worker each (`headrace serve`, and bench/serve_naive.py),
and loads each in turn from another process: wrk (Debian's package) with 16 connections,
or, without wrk, an asyncio client with 16 requests in flight. Every request is a real
/predict with real feature look-ups, rotating over 50 users' requests. Prints req/s, p50
and p99 per app and candidate count, the ratio, each server's CPU use during the run (a
2-core box also runs Redis and the client), the CPU other processes took meanwhile (a
shared box: runs with a large share are not comparable), requests per CPU-second of each
server with its ratio (the figure such sharing skews least), and each server's resident
memory before and after.

`--compare CHECKOUT` also runs the API from another checkout of the project (for
instance `git worktree add ../before main`), as `before`: an A/B of two versions of the
code in one run, on the same Redis, bodies and load, with the same-answers check.
`--granian` also runs this checkout's API served by granian instead of uvicorn (`pip
install granian`). A server's CPU and memory include its child processes.

With `--cascade KIND:M` (or `KIND:M:U`, the uncertainty rule) the model also learns a
variant of that kind, and two more API processes run: `cascade` (HEADRACE_CASCADE) and
KIND alone; their lines carry their CPU per request over the plain API's
(bench/serve_cascade_http.py has that part; bench/serve_cascade.py the cascade's quality).
"""

import argparse
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.procstat import busy_s, children_s, cpu_s, rss_mb
from bench.serve_cascade_http import CASCADE, CascadeRun, cost_line, extra_names
from bench.serve_check import same_answers
from bench.serve_load import Result, python_load, wrk_load
from bench.serve_setup import api_env, bench_redis, bodies, ports_from, start, train
from headrace.devstack import redis_local
from headrace.sim.simulator import SimulatorConfig

GRANIAN = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop"]
GRANIAN += ["--host", "127.0.0.1", "--workers", "1", "--no-ws", "--log-level", "warning"]


def profile(pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` for the run, into --profile (collapsed stacks; idle left out)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    argv = [str(py_spy), "record", "--pid", str(pid), "--duration", f"{args.duration:.0f}"]
    argv += ["--rate", "250", "--format", "raw", "--output", args.profile, "--nonblocking"]
    argv += ["--subprocesses"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(
    url: str,
    pid: int,
    redis_pid: int,
    load: list[bytes],
    args: argparse.Namespace,
    tmp: Path,
    profiled: bool = False,
) -> Result:
    runner = wrk_load if shutil.which("wrk") and not args.python_client else python_load
    runner(url, load, min(2.0, args.duration), args.concurrency, tmp)  # warm-up
    before = (cpu_s(pid), cpu_s(redis_pid), children_s(), busy_s(), time.monotonic())
    profiler = profile(pid, args) if profiled else None
    result = runner(url, load, args.duration, args.concurrency, tmp)
    if profiler is not None:
        profiler.wait(args.duration + 30)
    after = (cpu_s(pid), cpu_s(redis_pid), children_s(), busy_s(), time.monotonic())
    server, redis_cpu, client, machine, elapsed = (
        b - a for a, b in zip(before, after, strict=True)
    )
    result.server_cpu = server / elapsed
    # What else ran meanwhile (other people's processes on a shared box): the figures of a
    # run with a large share here are not comparable.
    result.others_cpu = max(0.0, machine - server - redis_cpu - client) / elapsed
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--candidates", default="1,100,1000")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--events", type=int, default=40_000, help="simulator records to learn")
    parser.add_argument("--rounds", type=int, default=1, help="runs per app and size (median)")
    parser.add_argument("--python-client", action="store_true", help="asyncio client, not wrk")
    parser.add_argument(
        "--profile",
        default=None,
        help="py-spy's collapsed stacks of the API's last run go to this file (pip install py-spy)",
    )
    parser.add_argument(
        "--cascade",
        default="",
        metavar="KIND:M[:U]",
        help="also run the cascade (logreg, then KIND on the best M, or with U on the U "
        "nearest the cut after the M-th) and KIND alone",
    )
    parser.add_argument(
        "--granian",
        action="store_true",
        help="also run the API served by granian instead of uvicorn, as `granian` "
        "(pip install granian)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="also run the API from another checkout of the project (e.g. a git worktree of "
        "the main branch) as `before`: an A/B of two versions in one run",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=0,
        help="Redis on this port, the API on the next, the naive app on the one after "
        "(default: free ports)",
    )
    parser.add_argument(
        "--caches",
        action="store_true",
        help="then bench/serve_cache.py at the largest size: the item and response caches "
        "beside the uncached API and the naive app, on a Zipf mix of users and queries",
    )
    args = parser.parse_args()
    if not 0 <= args.port_base <= 65_533:
        parser.error("--port-base must be between 1 and 65533 (or 0 for free ports)")
    next_port = ports_from(args.port_base)
    cascade: CascadeRun | None = None
    if args.cascade:
        try:
            cascade = CascadeRun.parse(args.cascade)
        except ValueError as e:  # pydantic's ValidationError is one
            parser.error(f"--cascade {args.cascade}: {e}")

    sizes = [int(k) for k in args.candidates.split(",")]
    tmp, stream, signer = bench_redis(next_port())
    start_at = datetime.now(UTC) - timedelta(seconds=args.events / 12 + 300)
    config = SimulatorConfig(
        seed=3, count=args.events, n_users=2_000, n_items=max(sizes) * 2, start=start_at
    )
    redis_pid = redis_local.start(stream)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        began = time.perf_counter()
        variants = {"main": "logreg", **({cascade.kind: cascade.kind} if cascade else {})}
        version = train(stream, config, signer, variants)
        print(
            f"model version {version} trained on {args.events:,} records "
            f"in {time.perf_counter() - began:.1f} s; logs in {tmp}"
        )
        env = api_env(stream, signer, max_candidates=max(sizes))
        ports = {"api": next_port(), "naive": next_port()}
        procs["api"] = start(
            [sys.executable, "-m", "headrace.cli", "serve", "--port", str(ports["api"])],
            env,
            tmp / "api.log",
            ports["api"],
        )
        procs["naive"] = start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.serve_naive:create",
                "--factory",
                "--port",
                str(ports["naive"]),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env,
            tmp / "naive.log",
            ports["naive"],
        )
        same = ["api", "naive"]
        serve = [sys.executable, "-m", "headrace.cli", "serve", "--port"]
        if args.granian:
            # The same app and settings, served by granian: its HTTP parsing and socket
            # writes run in Rust threads, the app on uvloop.
            ports["granian"] = next_port()
            procs["granian"] = start(
                [*GRANIAN, "--port", str(ports["granian"]), "api.app:app_from_env"],
                env,
                tmp / "granian.log",
                ports["granian"],
            )
            same.append("granian")
        if args.compare is not None:
            ports["before"] = next_port()
            procs["before"] = start(
                [*serve, str(ports["before"])],
                {**env, "PYTHONPATH": str(args.compare.resolve())},
                tmp / "before.log",
                ports["before"],
                cwd=args.compare.resolve(),
            )
            same.append("before")
        if cascade is not None:
            for name, settings in cascade.apps().items():
                ports[name] = next_port()
                procs[name] = start(
                    [sys.executable, "-m", "headrace.cli", "serve", "--port", str(ports[name])],
                    {**env, **settings},
                    tmp / f"{name}.log",
                    ports[name],
                )
            url = f"http://127.0.0.1:{ports[CASCADE]}"
            print(cascade.check(url, bodies(config, max(sizes), 1)[0]))
        memory = {name: [rss_mb(p.pid)] for name, p in procs.items()}
        runs: dict[tuple[str, int], list[Result]] = {}
        for k in sizes:
            load = bodies(config, k)
            # The plain API and the naive app do the same work; the cascade's apps rank
            # otherwise by design and were checked above (CascadeRun.check).
            urls = [f"http://127.0.0.1:{ports[name]}" for name in same]
            gap = same_answers(urls, load)
            print(
                f"{k} candidates: {', '.join(same)} rank {len(load)} bodies alike "
                f"(scores within {gap:.1g})"
            )
            # Rounds alternate the apps, so a burst of other work on a shared box does not
            # land on one app only; the report takes the median round.
            for _ in range(args.rounds):
                for name, proc in procs.items():
                    url = f"http://127.0.0.1:{ports[name]}"
                    profiled = args.profile is not None and name == "api"
                    result = measure(url, proc.pid, redis_pid, load, args, tmp, profiled)
                    runs.setdefault((name, k), []).append(result)
        results = {key: median_run(found) for key, found in runs.items()}
        for name, proc in procs.items():
            memory[name].append(rss_mb(proc.pid))
        report(results, sizes, memory, args)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
        redis_local.stop(stream)
    if args.caches:
        # A stack and traffic of its own: caches pay off on repeat traffic (Zipf users and
        # queries, new users), which this bench's rotation of distinct bodies is not.
        subprocess.run(caches_argv(args, max(sizes)), check=True)


def caches_argv(args: argparse.Namespace, candidates: int) -> list[str]:
    """bench/serve_cache.py with this run's load settings, on ports after this run's."""
    argv = [
        sys.executable,
        str(Path(__file__).with_name("serve_cache.py")),
        *("--duration", str(args.duration), "--rounds", str(args.rounds)),
        *("--concurrency", str(args.concurrency), "--candidates", str(candidates)),
        *("--port-base", str(args.port_base + 20 if args.port_base else 0)),
    ]
    return [*argv, "--python-client"] if args.python_client else argv


def per_cpu(result: Result) -> float:
    """Requests per CPU-second of the server: what a shared box's other work skews least
    (a starved server answers fewer requests a second, not fewer a CPU-second)."""
    return result.rps / max(result.server_cpu, 1e-9)


def median_run(found: list[Result]) -> Result:
    """The round with the median throughput (its latencies, CPU and background with it)."""
    return sorted(found, key=lambda r: r.rps)[len(found) // 2]


def report(
    results: dict[tuple[str, int], Result],
    sizes: list[int],
    memory: dict[str, list[float]],
    args: argparse.Namespace,
) -> None:
    print(
        f"\nconcurrency {args.concurrency}, {args.duration:.0f} s per run, median of "
        f"{args.rounds} round(s), one worker each"
    )
    print(
        f"{'candidates':>10} {'app':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'non-2xx':>7} {'cpu':>5} {'others':>6} {'req/cpu-s':>9}"
    )
    names = list(dict.fromkeys(name for name, _ in results))
    for k in sizes:
        for name in names:
            r = results[(name, k)]
            print(
                f"{k:>10} {name:>6} {r.rps:>8,.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
                f"{r.errors:>7} {r.server_cpu:>5.0%} {r.others_cpu:>6.0%} {per_cpu(r):>9,.0f}"
            )
        api, naive = results[("api", k)], results[("naive", k)]
        ratio = api.rps / max(naive.rps, 1e-9)
        print(
            f"{k:>10} {'ratio':>6} {ratio:>7.1f}x {'':>7} {'':>7} {'':>7} {'':>5} {'':>6} "
            f"{per_cpu(api) / max(per_cpu(naive), 1e-9):>8.1f}x"
        )
        for name in names:
            if name in ("granian", "before"):
                other = results[(name, k)]
                print(
                    f"{k:>10} {name:>6} against naive {other.rps / max(naive.rps, 1e-9):.1f}x "
                    f"req/s, {per_cpu(other) / max(per_cpu(naive), 1e-9):.1f}x req/cpu-s; "
                    f"api against {name} {api.rps / max(other.rps, 1e-9):.2f}x req/s, "
                    f"{per_cpu(api) / max(per_cpu(other), 1e-9):.2f}x req/cpu-s"
                )
        for name in extra_names(results):
            # The cost of the cascade (or the expensive variant alone) against the plain
            # API's: the cheap variant scoring everything.
            print(cost_line(name, k, results[(name, k)], api))
    for name, (before, after) in memory.items():
        print(f"resident memory {name}: {before:.0f} MB at start, {after:.0f} MB after the runs")


if __name__ == "__main__":
    main()
