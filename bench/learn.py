"""Learner benchmark: end-to-end rate, staleness and memory, against River's bare rate.

    .venv/bin/python bench/learn.py [--events 100000] [--memory-events 1000000]

Needs the local stack (`headrace stack up`, or set HEADRACE_* to a running one).
Prints, all measured in this run:
  1. events/s through Kafka -> parse -> features -> join -> learn -> publish with the
     default model (a real `headrace learn` process, as shipped: guards on; and again
     with the guards off), River's bare `learn_one` rate on the examples that stream
     defines (three pipelines: River's stock one-hot, with drop_zeros, our selectors),
     and the ratios;
  2. staleness of the published model (event produced -> first version containing
     it) at p50 and p99 under a 5,000 events/s stream;
  3. the learner's peak resident memory after 100,000 and after --memory-events events.
Each phase uses its own topic and Redis key prefix, deleted afterwards.
"""

import argparse
import numbers
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import redis
from kafka import KafkaProducer
from river import compose, linear_model, optim, preprocessing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headrace.devstack import stack  # noqa: E402
from headrace.sim.publish import publish  # noqa: E402
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate  # noqa: E402
from learner.aggregates import AggregateCache  # noqa: E402
from learner.joins import Pending  # noqa: E402
from learner.layout import ShardKeys, read_meta, versions_channel  # noqa: E402
from learner.loop import Learner  # noqa: E402
from learner.models import build_model  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from learner.settings import LearnerSettings  # noqa: E402
from learner.state import StateStore  # noqa: E402
from stream.events import Rejection, parse_event  # noqa: E402
from stream.producer import make_producer  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402
from tests.learner.harness import end_offsets, shipped_env  # noqa: E402


def fresh(base: StreamSettings, partitions: int) -> StreamSettings:
    name = "bench-" + uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "key_prefix": name,
            "topic_events": f"{name}.events",
            "topic_dlq": f"{name}.dlq",
            "topic_quarantine": f"{name}.quarantine",
            "partitions": partitions,
        }
    )
    ensure_topics(settings)
    return settings


def cleanup(client: redis.Redis, settings: StreamSettings) -> None:
    for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        client.delete(key)


def start_learner(
    settings: StreamSettings, log: Path, **overrides: object
) -> subprocess.Popen[bytes]:
    env = shipped_env(settings, **{"snapshot_interval_s": 0, **overrides})
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "headrace.cli", "learn"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )


def committed(client: redis.Redis, settings: StreamSettings) -> int:
    state = StateStore(client, ShardKeys(settings.key_prefix, "main"), 0)
    meta = state.load_meta()
    return sum(meta["offsets"].values()) if meta else 0


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Resident memory of `pid` in MB: peak (VmHWM) or current (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pending_joins(client: redis.Redis, settings: StreamSettings) -> int:
    meta = StateStore(client, ShardKeys(settings.key_prefix, "main"), 0).load_meta()
    return int(meta["joins"]["pending"]) if meta else 0


def river_logreg(drop_zeros: bool) -> Any:
    """The default model as River ships it: River's own SelectType, and its one-hot encoder
    as it comes (drop_zeros=False, the pipeline the issue's ~30,000/s refers to) or as our
    default model sets it (drop_zeros=True: no zero for every category value ever seen).

    `build_model("logreg")` also swaps in selectors that decide a value's type by its
    class (learner/models.py); everything else is the same River code and parameters.
    """
    return compose.Pipeline(
        (compose.SelectType(numbers.Number) | preprocessing.StandardScaler())
        + (compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=drop_zeros)),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.01), intercept_lr=0.01),
    )


def bare_rate(model: Any, examples: list[tuple[dict[str, float | str], bool]]) -> float:
    began = time.process_time()
    for x, y in examples:
        model.learn_one(x, y)
    return len(examples) / (time.process_time() - began)


class _Examples(Learner):
    """The learner's join, noting each example with its final label instead of scoring it."""

    examples: list[tuple[dict[str, float | str], bool]]

    def _close(self, entry: Pending) -> None:
        self.examples.append((entry.x(), entry.closed == "positive"))

    def _labeled(self, x: Mapping[str, float | str], y: bool, ts: float) -> None:
        self.examples.append((dict(x), y))


def bare_examples(
    records: list[SimRecord], client: redis.Redis
) -> list[tuple[dict[str, float | str], bool]]:
    """Exactly the examples the stream defines (found by our join), in closing order."""
    keys = ShardKeys("bench-bare-" + uuid.uuid4().hex[:6], "main")
    core = _Examples(LearnerSettings(), keys, AggregateCache(client))
    core.examples = []
    events = [
        e for e in map(parse_event, (r.value for r in records)) if not isinstance(e, Rejection)
    ]
    for start in range(0, len(events), 2000):
        batch = events[start : start + 2000]
        core.prefetch(batch)
        for offset, event in enumerate(batch, start):
            core.process(event, 0, offset)
    return core.examples


def end_to_end(
    base: StreamSettings,
    client: redis.Redis,
    records: list[SimRecord],
    log: Path,
    **overrides: object,
) -> tuple[float, float, dict[str, int]]:
    """(events/s wall clock, events per CPU second, the published counters) of a learner
    working off a backlog."""
    settings = fresh(base, partitions=3)
    producer = make_producer(settings)
    publish(producer, settings.topic_events, records)
    producer.close()
    total = sum(end_offsets(settings).values())
    proc = start_learner(settings, log, **overrides)
    try:
        # Timed from the first publish: the process start and the lease are not the rate.
        while committed(client, settings) == 0:
            time.sleep(0.01)
        began, first = time.perf_counter(), committed(client, settings)
        cpu_began = cpu_seconds(proc.pid)
        while (done := committed(client, settings)) < total:
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(proc.pid) - cpu_began
    finally:
        proc.terminate()
        proc.wait()
    meta = read_meta(client, ShardKeys(settings.key_prefix, "main")) or {}
    cleanup(client, settings)
    return (done - first) / elapsed, (done - first) / cpu, dict(meta.get("counts", {}))


def throughput(base: StreamSettings, client: redis.Redis, n: int, log: Path) -> None:
    records = list(generate(SimulatorConfig(seed=1, count=n)))
    runs = {
        "default (fraud and drift guards on)": end_to_end(base, client, records, log),
        "guards off (the issue's pipeline)": end_to_end(
            base, client, records, log, guards_enabled="false"
        ),
    }
    examples = bare_examples(records, client)
    # The baselines run in this process and are timed in its CPU seconds.
    baselines = {
        "River's pipeline, default one-hot": bare_rate(river_logreg(False), examples),
        "River's pipeline, one-hot drop_zeros": bare_rate(river_logreg(True), examples),
        "our default model (tuned selectors)": bare_rate(build_model("logreg"), examples),
    }
    print(f"end to end, {n:,} events on 3 partitions, default model:")
    for name, (wall, per_cpu, counts) in runs.items():
        print(f"  {name}: {wall:,.0f} events/s wall clock, {per_cpu:,.0f} per CPU second")
        # The same work on both sides: a stuck join would close fewer examples and flatter
        # the rate. With fake negatives the learner also updates its model at every
        # impression, so it makes more updates than the bare loop's one per example.
        learned, trained = counts.get("learned", 0), counts.get("trained", 0)
        same = "the same examples" if learned == len(examples) else "NOT the same examples"
        print(
            f"    closed {learned:,} examples ({same} as the bare loop's {len(examples):,}),"
            f" {trained:,} model updates"
        )
    print(f"River's bare learn_one on the same {len(examples):,} examples, per CPU second,")
    print("and the ratio of the default end-to-end rate to it, wall / per CPU (target 0.5):")
    wall, per_cpu, _ = runs["default (fraud and drift guards on)"]
    for name, bare in baselines.items():
        print(f"  {name}: {bare:,.0f}/s; ratio {wall / bare:.2f} / {per_cpu / bare:.2f}")


def staleness(
    base: StreamSettings, client: redis.Redis, rate: int, seconds: int, log: Path
) -> None:
    settings = fresh(base, partitions=3)
    keys = ShardKeys(settings.key_prefix, "main")
    proc = start_learner(settings, log)
    versions: list[tuple[float, dict[int, int]]] = []
    stop = threading.Event()

    def watch() -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(versions_channel(settings.key_prefix))
        store = StateStore(client, keys, 0)
        while not stop.is_set():
            if pubsub.get_message(timeout=0.05) is not None:
                meta = store.load_meta()
                if meta is not None:
                    offsets = {int(p): o for p, o in meta["offsets"].items()}
                    versions.append((time.time(), offsets))
        pubsub.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    produced: list[tuple[int, int, float]] = []
    producer: KafkaProducer = make_producer(settings, linger_ms=1)
    try:
        time.sleep(3)  # the learner starts and takes the lease
        records = generate(SimulatorConfig(seed=2, count=rate * seconds))
        began = time.perf_counter()
        for i, record in enumerate(records):
            due = began + i / rate
            if (lag := due - time.perf_counter()) > 0:
                time.sleep(lag)
            sent_at = time.time()
            future = producer.send(settings.topic_events, key=record.key, value=record.value)
            future.add_callback(lambda md, t=sent_at: produced.append((md.partition, md.offset, t)))
        producer.flush()
        time.sleep(2)
    finally:
        stop.set()
        watcher.join()
        producer.close()
        proc.terminate()
        proc.wait()
    delays = []
    for partition, offset, sent_at in produced:
        seen = next((t for t, offsets in versions if offsets.get(partition, 0) > offset), None)
        if seen is not None:
            delays.append(seen - sent_at)
    arr = np.array(delays) * 1000
    print(
        f"staleness at {rate:,} events/s over {seconds} s ({len(delays):,} of {len(produced):,} "
        f"events seen published): p50 {np.percentile(arr, 50):.0f} ms, "
        f"p99 {np.percentile(arr, 99):.0f} ms (target p99 < 1000 ms)"
    )
    cleanup(client, settings)


def memory(base: StreamSettings, client: redis.Redis, n: int, log: Path) -> None:
    settings = fresh(base, partitions=3)
    proc = start_learner(settings, log, variants='{"main": "logreg", "tree": "tree"}')
    marks = sorted({m for m in (100_000, 250_000, 500_000, 750_000) if m < n} | {n})
    producer = make_producer(settings)
    try:
        sent = 0
        for mark in marks:
            config = SimulatorConfig(seed=3, count=mark, n_users=200_000, n_items=20_000)
            publish(
                producer,
                settings.topic_events,
                (r for i, r in enumerate(generate(config)) if i >= sent),
            )
            sent = mark
            while committed(client, settings) < mark:
                time.sleep(0.5)
            print(
                f"after {mark:,} events (logreg + tree): peak RSS {rss_mb(proc.pid):.0f} MB, "
                f"RSS {rss_mb(proc.pid, 'VmRSS'):.0f} MB, "
                f"pending joins {pending_joins(client, settings):,}"
            )
    finally:
        producer.close()
        proc.terminate()
        proc.wait()
    cleanup(client, settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["throughput", "staleness", "memory"]
    )
    args = parser.parse_args()
    base = StreamSettings()
    print(stack.up(base))
    client = connect(base)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "headrace-bench-learn.log"
    if "throughput" not in args.skip:
        throughput(base, client, args.events, log)
    if "staleness" not in args.skip:
        staleness(base, client, args.rate, args.seconds, log)
    if "memory" not in args.skip:
        memory(base, client, args.memory_events, log)


if __name__ == "__main__":
    main()
