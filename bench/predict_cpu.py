"""CPU per /predict inside the API process, without HTTP or a load generator: an A/B of
two checkouts that a shared box's noise does not drown.

    .venv/bin/python bench/predict_cpu.py --compare CHECKOUT [--candidates 100]
        [--requests 2000] [--rounds 7] [--port-base N]

Starts its own Redis with a trained model (bench/serve_setup.py, as bench/serve.py),
then one worker process per checkout (this one, and CHECKOUT as `before`), each holding
the app `headrace serve` builds (`api.app:app_from_env`, its lifespan started, on
uvloop). Each body is sent to both in turn, and both must give the same items and scores
(within 1e-6: the aggregates' decay moves scores between requests). Then, round after
round, each worker in turn sends --requests POST /predict calls through the app's ASGI
entry (the fast path; 16 in flight, rotating over 50 users' bodies) and reports its
process's CPU time (user and system, all threads) per request. Only the process's own
CPU counts: time it waits for Redis or for the cores is not in it, so other work on the
box moves it far less than req/s. What it leaves out: uvicorn's HTTP parsing and socket
writes (bench/serve.py has those).

Prints each round, then the median CPU us a request of each checkout and their ratio.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvloop

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve()
IN_FLIGHT = 16


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _call(app: Any, body: bytes) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(body), receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _serve(bodies: list[bytes]) -> None:
    """The worker: the app of the checkout first on sys.path, driven by stdin commands."""
    from api.app import app_from_env

    app = app_from_env()
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 60
        while not app.state.services.holder.served.shards:
            if time.monotonic() > deadline:
                raise SystemExit("no model loaded within 60 s")
            await asyncio.sleep(0.1)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "check":
                status, raw = await _call(app, bodies[int(arg)])
                scores = json.loads(raw)["scores"] if status == 200 else []
                ranked = [[s["item_id"], s["score"]] for s in scores]
                print(json.dumps([status, ranked]), flush=True)
            elif command == "run":
                print(json.dumps(await _run(app, bodies, int(arg))), flush=True)
            else:
                return


async def _run(app: Any, bodies: list[bytes], n: int) -> dict[str, float]:
    """`n` requests, IN_FLIGHT at a time: the process's CPU us a request."""
    statuses: list[int] = []

    async def lane(first: int) -> None:
        for i in range(first, n, IN_FLIGHT):
            statuses.append((await _call(app, bodies[i % len(bodies)]))[0])

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(j) for j in range(IN_FLIGHT)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us": cpu / n * 1e6, "wall_s": wall, "bad": sum(s != 200 for s in statuses)}


def _worker(checkout: Path, env: dict[str, str], bodies_file: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, str(HERE), "--worker", str(bodies_file)]
    return subprocess.Popen(
        argv,
        cwd=checkout,
        env={**env, "PYTHONPATH": str(checkout)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _ask(proc: subprocess.Popen[str], command: str) -> Any:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a worker stopped (exit {proc.wait()})")
    return json.loads(line)


def _same(answers: dict[str, Any]) -> float:
    """The largest score gap between the checkouts, refusing other items or order."""
    names = list(answers)
    gap = 0.0
    for other in names[1:]:
        for (s1, a), (s2, b) in zip(answers[names[0]], answers[other], strict=True):
            if s1 != 200 or s2 != 200 or [x for x, _ in a] != [y for y, _ in b]:
                raise SystemExit(f"{names[0]} and {other} answer differently")
            gap = max(gap, max(abs(x - y) for (_, x), (_, y) in zip(a, b, strict=True)))
    if gap > 1e-6:
        raise SystemExit(f"scores differ by {gap:.2g}")
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="the checkout to compare (required)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=40_000, help="simulator records to learn")
    parser.add_argument("--port-base", type=int, default=0, help="Redis's port (else free)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        sys.path.insert(0, str(Path.cwd()))
        load = [b.encode() for b in json.loads(args.worker.read_text())["bodies"]]
        # uvloop, as `headrace serve` runs the app (uvicorn's loop when it is installed).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(load))
        return
    if args.compare is None:
        parser.error("--compare CHECKOUT is required")

    from bench.serve_setup import api_env, bench_redis, bodies, ports_from, train
    from headrace.devstack import redis_local
    from headrace.sim.simulator import SimulatorConfig

    tmp, stream, signer = bench_redis(ports_from(args.port_base)())
    start_at = datetime.now(UTC) - timedelta(seconds=args.events / 12 + 300)
    k = args.candidates
    config = SimulatorConfig(
        seed=3, count=args.events, n_users=2_000, n_items=k * 2, start=start_at
    )
    redis_local.start(stream)
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        version = train(stream, config, signer)
        print(f"model version {version} trained on {args.events:,} records; logs in {tmp}")
        bodies_file = tmp / "bodies.json"
        load = bodies(config, k)
        bodies_file.write_text(json.dumps({"bodies": [b.decode() for b in load]}))
        env = {**api_env(stream, signer, max_candidates=k), "PATH": os.environ["PATH"]}
        procs["api"] = _worker(Path(__file__).resolve().parent.parent, env, bodies_file)
        procs["before"] = _worker(args.compare.resolve(), env, bodies_file)
        # Each body to both in turn: the aggregates' decay moves scores as time passes.
        checks: dict[str, list[Any]] = {name: [] for name in procs}
        for i in range(len(load)):
            for name, proc in procs.items():
                checks[name].append(_ask(proc, f"check {i}"))
        gap = _same(checks)
        print(f"{k} candidates: {', '.join(procs)} rank 50 bodies alike (scores within {gap:.1g})")
        for proc in procs.values():  # warm-up
            _ask(proc, f"run {args.requests // 4}")
        cpu: dict[str, list[float]] = {name: [] for name in procs}
        for round_no in range(args.rounds):
            line = []
            # Alternate which goes first, so a burst of other work lands on both.
            names = list(procs) if round_no % 2 == 0 else list(reversed(procs))
            for name in names:
                result = _ask(procs[name], f"run {args.requests}")
                if result["bad"]:
                    raise SystemExit(f"{name}: {result['bad']} answers were not 200")
                cpu[name].append(result["cpu_us"])
                line.append(f"{name} {result['cpu_us']:6.1f} us")
            print(f"round {round_no + 1}: " + ", ".join(line))
        median = {name: statistics.median(values) for name, values in cpu.items()}
        print(
            f"median CPU a request ({args.requests:,} requests x {args.rounds} rounds, "
            f"{k} candidates): api {median['api']:.1f} us, before {median['before']:.1f} us; "
            f"api against before {median['before'] / median['api']:.3f}x requests per CPU-second"
        )
    finally:
        for proc in procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(30)
        redis_local.stop(stream)


if __name__ == "__main__":
    main()
