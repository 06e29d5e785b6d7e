"""Recovery benchmark: a cold start with an empty Redis, back to serving, then the replay.

    .venv/bin/python bench/recovery.py [--events 100000]

Needs the local stack (started if not running). In one run it:
  1. learns --events events from scratch (the baseline rate), snapshots, stops;
  2. publishes --events more events, then deletes the shard's whole Redis state;
  3. starts a learner and the API: prints the time from that start to the API serving
     the restored model, and the replay rate of the events since the snapshot,
     with its ratio to the baseline rate.
"""

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from tempfile import TemporaryDirectory

import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench.learn import cleanup, committed, fresh  # noqa: E402
from headrace.devstack import stack  # noqa: E402
from headrace.sim.publish import publish  # noqa: E402
from headrace.sim.simulator import SimulatorConfig, generate  # noqa: E402
from learner.layout import ShardKeys  # noqa: E402
from learner.recovery import Snapshots  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from snapshots.settings import SigningSettings, SnapshotSettings  # noqa: E402
from stream.producer import make_producer  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.learner.harness import end_offsets, learner_env  # noqa: E402
from tests.support import free_port, signing_key  # noqa: E402


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "headrace.cli", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def wait_caught_up(client: redis.Redis, settings: StreamSettings, total: int) -> float:
    while committed(client, settings) < total:
        time.sleep(0.01)
    return time.perf_counter()


def served_version(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=1) as response:
            models = orjson.loads(response.read())["models"]
    except OSError:
        return None
    return models[0].get("version") if models else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    base = StreamSettings()
    print(stack.up(base))
    client = connect(base)
    settings = fresh(base, partitions=3)
    keys = ShardKeys(settings.key_prefix, "main")
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "headrace-bench-recovery.log"
    records = list(generate(SimulatorConfig(seed=5, count=2 * args.events)))
    producer = make_producer(settings)
    with TemporaryDirectory() as snapshot_dir:
        env = learner_env(
            settings,
            lease_ttl_ms=3000,
            snapshot_dir=snapshot_dir,
            snapshot_interval_s=3600,
        )
        try:
            publish(producer, settings.topic_events, records[: args.events])
            learner = spawn(["learn"], env, log)
            while committed(client, settings) == 0:
                time.sleep(0.01)
            began, first = time.perf_counter(), committed(client, settings)
            done = wait_caught_up(client, settings, sum(end_offsets(settings).values()))
            baseline = (args.events - first) / (done - began)
            learner.terminate()  # a clean stop publishes and takes a snapshot
            learner.wait()
            snapshots = Snapshots.from_settings(
                SnapshotSettings(snapshot_dir=Path(snapshot_dir)),
                SigningSettings(verify_key=signing_key().public.text),
            )
            header = snapshots.store.list()[-1].header

            publish(producer, settings.topic_events, records[args.events :])
            total = sum(end_offsets(settings).values())
            cleanup(client, settings)  # the disaster: the shard's Redis state is gone
            assert not client.exists(keys.state)

            port = free_port()
            started = time.perf_counter()
            learner = spawn(["learn"], env, log)
            api = spawn(["serve", "--port", str(port)], env, log)
            while (version := served_version(port)) is None:
                time.sleep(0.01)
            serving = time.perf_counter()
            at_restore = committed(client, settings)
            done = wait_caught_up(client, settings, total)
            replay = (total - at_restore) / (done - serving)
            api.terminate()
            learner.terminate()
            api.wait()
            learner.wait()
        finally:
            producer.close()
            cleanup(client, settings)
    print(f"snapshot {header.snapshot_id}: {sum(header.n_learned.values()):,} examples learned")
    print(
        f"cold start with an empty Redis -> API serving the restored model (version {version}): "
        f"{serving - started:.2f} s (both processes started from nothing)"
    )
    print(f"replay of the {total - at_restore:,} events since the snapshot: {replay:,.0f} events/s")
    print(
        f"baseline, learning from scratch in the same run: {baseline:,.0f} events/s; "
        f"ratio {replay / baseline:.2f}"
    )


if __name__ == "__main__":
    main()
