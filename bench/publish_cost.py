"""What one publish costs Redis (the time every API read waits) and the learner, by size.

    .venv/bin/python bench/publish_cost.py [--sizes 250,1000,5000] [--repeat 3] [--port N]
    PYTHONPATH=../before .venv/bin/python bench/publish_cost.py   # another checkout's learner

Starts its own Redis, learns `--events` simulator records and publishes them, then, for
each size, learns that many more records and publishes them as a learner does (only what
changed since the last publish), `--repeat` times. Prints per publish: the aggregate
hashes and pending joins it wrote, Redis's time in the transaction (EXEC, from INFO
commandstats: Redis runs nothing else meanwhile) and the learner's CPU in the publish.
A live learner at 1,000 records a second publishes 250 records every 250 ms; one catching
up publishes HEADRACE_PUBLISH_EVERY_EVENTS (5,000) at a time.
"""

import argparse
import itertools
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    # Not from bench/ (its guards.py would shadow the package), and the project last, so
    # that a PYTHONPATH naming another checkout of the project wins.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    if "PYTHONPATH" in os.environ:
        sys.path.append(sys.path.pop(0))

import redis
from pydantic import SecretStr

import learner
from bench.serve_setup import free_port
from headrace.devstack import redis_local
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
from stream.events import Rejection, parse_event
from stream.settings import StreamSettings


def exec_usec(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_exec", {}).get("usec", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="records learned first")
    parser.add_argument("--sizes", default="250,1000,5000", help="records per publish")
    parser.add_argument("--repeat", type=int, default=3, help="publishes of each size")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--port", type=int, default=0, help="Redis's port (default: a free one)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="headrace-bench-")
    stream = StreamSettings(
        redis_url=f"redis://127.0.0.1:{args.port or free_port()}/0",
        redis_password=SecretStr(secrets.token_urlsafe(32)),
        stack_dir=tmp,
        key_prefix="bench",
    )
    print(f"learner code from {Path(learner.__file__).resolve().parent.parent}")
    start = datetime.now(UTC) - timedelta(seconds=args.events / 12 + 300)
    config = SimulatorConfig(
        seed=3, count=None, n_users=args.users, n_items=args.items, start=start
    )
    redis_local.start(stream)
    try:
        client: redis.Redis = connect(stream)
        keys = ShardKeys(stream.key_prefix, "main")
        lease = Lease(client, keys, 600_000)
        assert lease.try_acquire() and lease.token is not None
        store = StateStore(client, keys, 600_000, Seal.of(SigningKey.generate()))
        model = Learner(LearnerSettings(join_window_s=300.0), keys, AggregateCache(client))
        model.topology = {"partitions": [0], "n_partitions": 1}
        records = enumerate(generate(config))
        stamp = None

        def learn(count: int) -> None:
            for offset, record in itertools.islice(records, count):
                event = parse_event(record.value)
                if not isinstance(event, Rejection):
                    model.prefetch([event])
                    model.process(event, 0, offset)

        def publish() -> tuple[int, int, float, float]:
            nonlocal stamp
            delta = model.delta()
            before, cpu = exec_usec(client), time.process_time()
            stamp = store.publish(lease.token or "", delta, after=stamp)
            cpu = time.process_time() - cpu
            model.published(delta, stamp.version)
            held = (exec_usec(client) - before) / 1000
            return len(delta.aggregates), len(delta.pending_upserts), held, 1000 * cpu

        learn(args.events)
        publish()
        print(f"{'records':>8} {'hashes':>7} {'joins':>6} {'redis ms':>9} {'learner ms':>10}")
        for size in (int(s) for s in args.sizes.split(",")):
            for _ in range(args.repeat):
                learn(size)
                hashes, joins, held, cpu = publish()
                print(f"{size:>8,} {hashes:>7,} {joins:>6,} {held:>9.1f} {cpu:>10.1f}")
        print(f"load average {os.getloadavg()[0]:.2f}")
        lease.release()
    finally:
        redis_local.stop(stream)


if __name__ == "__main__":
    main()
