"""A live learner's publishes, from a process of its own, for the serving benches.

    HEADRACE_REDIS_URL=... HEADRACE_REDIS_PASSWORD=... HEADRACE_KEY_PREFIX=... \\
    HEADRACE_SIGNING_KEY=... .venv/bin/python bench/live_publisher.py --every 0.25 \\
        --rate 1000 --start 2026-01-01T00:00:00+00:00 --users 2000 --items 200 --out stats.json

Takes the shard `main` over as a learner does (its lease, then the committed state and
offsets), and every `--every` seconds learns the next `--rate * --every` records of the
simulator's stream (the one the state was trained on: same seed, start, users and items,
continued from the committed offset) and publishes them: a new model version, the
aggregates, pending joins and event ids those records changed, as a live learner with
HEADRACE_PUBLISH_EVERY_MS writes them. A process of its own so that the bench's load and
servers do not share an interpreter lock with it. SIGTERM ends it; it then writes what it
did to `--out` (versions, records learned, CPU seconds, each publish's duration and size).
"""

import argparse
import itertools
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    # Not from bench/ (its guards.py would shadow the package), and the project last, so
    # that a PYTHONPATH naming another checkout of the project wins.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    if "PYTHONPATH" in os.environ:
        sys.path.append(sys.path.pop(0))

import orjson

from headrace.sim.simulator import SimulatorConfig, generate
from learner.aggregates import AggregateCache
from learner.layout import ShardKeys
from learner.lease import Lease
from learner.loop import Learner
from learner.redisconn import connect
from learner.settings import LearnerSettings
from learner.signing import Seal
from learner.state import StateStore
from snapshots.keys import SigningKey
from snapshots.settings import SigningSettings
from stream.events import Rejection, parse_event
from stream.settings import StreamSettings

# Longer than any bench pauses the process between runs (SIGSTOP): the lease must not
# lapse while the process is stopped.
LEASE_MS = 3_600_000


class LiveLearner:
    """This script as a bench's child process: started stopped (SIGSTOP), resumed for the
    runs that need it."""

    def __init__(
        self,
        stream: StreamSettings,
        signer: SigningKey,
        start: datetime,
        *,
        every: float,
        rate: float,
        users: int,
        items: int,
        checkout: Path | None = None,
    ) -> None:
        """Start it on the state `stream` holds (trained over the simulator's stream of
        `start`, `users` and `items`, seed 3); with `checkout`, that checkout's learner code
        publishes (an A/B of the learner)."""
        self.out = Path(stream.stack_dir) / f"learner-{stream.key_prefix}-{id(self)}.json"
        env = {
            "PATH": "/usr/bin:/bin",
            "HEADRACE_REDIS_URL": stream.redis_url,
            "HEADRACE_REDIS_PASSWORD": stream.redis_password_value or "",
            "HEADRACE_KEY_PREFIX": stream.key_prefix,
            "HEADRACE_SIGNING_KEY": signer.text,
            **({"PYTHONPATH": str(checkout)} if checkout is not None else {}),
        }
        argv = [sys.executable, str(Path(__file__).resolve())]
        argv += ["--every", str(every), "--rate", str(rate), "--start", start.isoformat()]
        argv += ["--users", str(users), "--items", str(items), "--out", str(self.out)]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, cwd=checkout)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ready"):
            self.proc.kill()
            raise SystemExit(f"the live learner did not start: {line!r}")
        self.first = int(line.split()[1])
        self.pause()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def close(self) -> dict[str, Any]:
        """End it; what it did (see `main`), or {} when it wrote nothing."""
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(30)
        return orjson.loads(self.out.read_bytes()) if self.out.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0.25, help="seconds between publishes")
    parser.add_argument("--rate", type=float, default=1_000.0, help="records learned a second")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--start", required=True, help="the simulator's start (ISO 8601)")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--variants", default='{"main": "logreg"}', help="JSON, as trained")
    parser.add_argument("--out", type=Path, required=True, help="stats written here at exit")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    stream = StreamSettings()
    client = connect(stream)
    keys = ShardKeys(stream.key_prefix, "main")
    lease = Lease(client, keys, LEASE_MS)
    if not lease.try_acquire() or lease.token is None:
        raise SystemExit("the shard's lease is held by another learner")
    signer = SigningSettings().signer()
    store = StateStore(client, keys, LEASE_MS, Seal.of(signer))
    settings = LearnerSettings(join_window_s=300.0, variants=orjson.loads(args.variants))
    learner = Learner(settings, keys, AggregateCache(client))
    learner.topology = {"partitions": [0], "n_partitions": 1}
    committed = store.load()
    if committed is None:
        raise SystemExit("no committed state to continue from")
    learner.restore(committed)
    stamp = committed.stamp
    config = SimulatorConfig(
        seed=args.seed,
        count=None,
        n_users=args.users,
        n_items=args.items,
        start=datetime.fromisoformat(args.start),
    )
    offset = committed.offsets.get(0, 0)
    records = itertools.islice(generate(config), offset, None)
    batch = max(1, round(args.rate * args.every))
    publishes: list[dict[str, float]] = []
    began = time.perf_counter()
    print(f"ready {stamp.version}", flush=True)
    deadline = time.monotonic()
    while not stop.is_set():
        for record in itertools.islice(records, batch):
            event = parse_event(record.value)
            if not isinstance(event, Rejection):
                learner.prefetch([event])
                learner.process(event, 0, offset)
            offset += 1
        delta = learner.delta()
        started = time.perf_counter()
        stamp = store.publish(lease.token, delta, after=stamp)
        learner.published(delta, stamp.version)
        publishes.append(
            {
                "seconds": time.perf_counter() - started,
                "hashes": len(delta.aggregates),
                "pending": len(delta.pending_upserts),
                "model_bytes": sum(len(b) for b in delta.models.values()),
                "core_bytes": len(delta.core),
            }
        )
        # After a pause (SIGSTOP) the next publish is due at once, not every missed one.
        deadline = max(deadline + args.every, time.monotonic())
        stop.wait(max(0.0, deadline - time.monotonic()))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = {
        "versions": len(publishes),
        "last_version": stamp.version,
        "records": offset - committed.offsets.get(0, 0),
        "wall_s": time.perf_counter() - began,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "publishes": publishes,
    }
    args.out.write_bytes(orjson.dumps(stats))
    lease.release()
    client.close()


if __name__ == "__main__":
    main()
