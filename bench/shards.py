"""Total learning rate with 1, 2 and 3 shards: one `headrace learn` process a shard.

    .venv/bin/python bench/shards.py [--events 200000] [--partitions 12] [--shards 1 2 3]
                                     [--rounds 3]

Needs the local stack (`headrace stack up`, or set HEADRACE_* to a running one). One
simulator stream goes once into one topic of --partitions partitions; each shard count
then learns all of it from the start, under a key prefix of its own, with the partitions
split evenly between the shards (HEADRACE_SHARDS `s0=0,1,..;s1=..`), every learner as it
ships (guards on). Timed from the moment every shard has published (the processes
started and took their leases) until every shard's committed offsets reach the end.

The shard counts take turns, --rounds times, so a change in what else the machine runs
weighs on each alike. Prints, per shard count, the median round: events/s wall clock,
events per CPU second of the learners, the CPU cores the learners, the broker and Redis
(when the local stack runs them) and everything else on the machine used meanwhile, and
the ratio of the wall rate to the one-shard run's. Every run must take in the same
events (the committed counters are checked against the topic); the examples learned
and model updates are printed beside them, since each shard's join closes its own.
"""

import argparse
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learn import cleanup, cpu_seconds, fresh  # noqa: E402
from headrace.devstack import stack  # noqa: E402
from headrace.sim.publish import publish  # noqa: E402
from headrace.sim.simulator import SimulatorConfig, generate  # noqa: E402
from learner.layout import ShardKeys, read_meta  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from stream.producer import make_producer  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.learner.harness import end_offsets, shipped_env  # noqa: E402


def split(partitions: int, shards: int) -> dict[str, list[int]]:
    """`partitions` in `shards` contiguous runs as even as they go."""
    bounds = [round(i * partitions / shards) for i in range(shards + 1)]
    return {f"s{i}": list(range(bounds[i], bounds[i + 1])) for i in range(shards)}


def spec(layout: dict[str, list[int]]) -> str:
    return ";".join(f"{name}={','.join(map(str, parts))}" for name, parts in layout.items())


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    shards: int
    events: int
    wall_s: float
    learner_cpu_s: float
    servers_cpu_s: float
    """The local broker's and Redis's CPU seconds (0 when they run elsewhere)."""
    machine_cpu_s: float
    taken_in: int
    learned: int
    trained: int

    @property
    def rate(self) -> float:
        return self.events / self.wall_s

    @property
    def per_cpu(self) -> float:
        return self.events / self.learner_cpu_s


def committed(client: redis.Redis, prefix: str, names: list[str]) -> list[int | None]:
    """Each shard's committed offsets summed; None for a shard that has not published."""
    out: list[int | None] = []
    for name in names:
        meta = read_meta(client, ShardKeys(prefix, name))
        out.append(sum(int(o) for o in meta["offsets"].values()) if meta else None)
    return out


def servers_cpu_s(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def learn(
    base: StreamSettings,
    client: redis.Redis,
    shards: int,
    total: int,
    log: Path,
    servers: list[int],
) -> Run:
    layout = split(base.partitions, shards)
    names = list(layout)
    settings = base.model_copy(
        update={"key_prefix": f"{base.key_prefix}-{shards}s-{uuid.uuid4().hex[:6]}"}
    )
    procs = []
    with log.open("ab") as out:
        for name in names:
            env = shipped_env(
                settings,
                shards=spec(layout),
                shard=name,
                snapshot_interval_s=0,
                group_id=settings.key_prefix,
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "headrace.cli", "learn"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=out,
                )
            )
    try:
        # Timed from the moment every shard has published: the starts and the leases
        # are not the rate.
        while None in (done := committed(client, settings.key_prefix, names)):
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a learner exited; see {log}")
            time.sleep(0.01)
        began, first = time.perf_counter(), sum(n or 0 for n in done)
        cpu_began = sum(cpu_seconds(p.pid) for p in procs)
        servers_began = servers_cpu_s(servers)
        busy_began = machine_busy_s()
        while (now := sum(n or 0 for n in committed(client, settings.key_prefix, names))) < total:
            time.sleep(0.01)
        wall = time.perf_counter() - began
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_began
        busy = machine_busy_s() - busy_began
        server_cpu = servers_cpu_s(servers) - servers_began
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    counts: dict[str, int] = {}
    for name in names:
        meta = read_meta(client, ShardKeys(settings.key_prefix, name)) or {}
        for key, value in meta.get("counts", {}).items():
            counts[key] = counts.get(key, 0) + int(value)
    cleanup(client, settings)
    return Run(
        shards=shards,
        events=now - first,
        wall_s=wall,
        learner_cpu_s=cpu,
        servers_cpu_s=server_cpu,
        machine_cpu_s=busy,
        taken_in=sum(n for k, n in counts.items() if k.startswith("event_")),
        learned=counts.get("learned", 0),
        trained=counts.get("trained", 0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = StreamSettings()
    print(stack.up(base))
    servers = [s.pid for s in stack.status(base).services if s.pid is not None]
    client = connect(base)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "headrace-bench-shards.log"
    settings = fresh(base, partitions=args.partitions)
    producer = make_producer(settings)
    publish(producer, settings.topic_events, generate(SimulatorConfig(seed=1, count=args.events)))
    producer.close()
    total = sum(end_offsets(settings).values())
    assert total == args.events, f"the topic holds {total:,} of {args.events:,} records"
    cores = os.cpu_count() or 1
    print(
        f"{total:,} events on {args.partitions} partitions, one learner process a shard, "
        f"{cores} cores, load average {os.getloadavg()[0]:.2f} before the runs:"
    )
    rounds: dict[int, list[Run]] = {n: [] for n in args.shards}
    for i in range(args.rounds):
        for n in args.shards:
            run = learn(settings, client, n, total, log, servers)
            rounds[n].append(run)
            print(
                f"  round {i + 1}, {n} shard(s): {run.rate:,.0f} events/s, "
                f"everything else {other_cores(run):.2f} cores"
            )
    runs = [sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for rs in rounds.values()]
    # The baseline is the one-shard run of this same invocation (the first count otherwise).
    baseline = next((r for r in runs if r.shards == 1), runs[0])
    print(f"median of {args.rounds} round(s); cores are CPU seconds per wall second:")
    for run in runs:
        same = "the same events" if run.taken_in == total else "NOT the same events"
        print(
            f"  {run.shards} shard(s): {run.rate:,.0f} events/s wall clock, "
            f"{run.per_cpu:,.0f} per learner CPU second; ratio to {baseline.shards} shard(s) "
            f"{run.rate / baseline.rate:.2f} (wall) / {run.per_cpu / baseline.per_cpu:.2f} "
            "(per CPU second)"
        )
        print(
            f"    cores: learners {run.learner_cpu_s / run.wall_s:.2f}, broker and Redis "
            f"{run.servers_cpu_s / run.wall_s:.2f}, everything else {other_cores(run):.2f}, "
            f"the machine {run.machine_cpu_s / run.wall_s:.2f} of {cores}"
        )
        print(
            f"    took in {run.taken_in:,} events ({same} as the topic's {total:,}); "
            f"{run.learned:,} examples learned, {run.trained:,} model updates; "
            f"{run.events:,} events timed over {run.wall_s:.1f} s"
        )
    cleanup(client, settings)


def other_cores(run: Run) -> float:
    """Cores the rest of the machine used during the run: not the learners, broker, Redis."""
    return (run.machine_cpu_s - run.learner_cpu_s - run.servers_cpu_s) / run.wall_s


if __name__ == "__main__":
    main()
