"""Learning read as a backlog: the simulator's stream on several partitions, read in runs.

    .venv/bin/python bench/backlog.py [--seed 3] [--partitions 3] [--runs 250,5000]

Needs a Redis, as bench/quality.py does. A learner that starts on a topic that already
holds events (a cold start, a replay, a restore) reads each partition in long runs, and
the event-time watermark waits for the slowest partition. The stream is split by user as
Kafka's partitioner splits it (one user's events stay on one partition and in order),
then read `run` records of a partition at a time, round robin, through the learner's core
(`learner.loop.Learner`, shipped settings and guards) with the consumer's end offsets
known, once per delayed-feedback method and run length. For each it prints the held-out
ratio to the hidden model's AUC and the calibration on 1,000 unseen requests
(`tests/heldout.py`, as bench/quality.py), and how many drift alerts made the model take
full-size steps again (on this stream, without a drift, each is a false alarm). The
outcome should not depend on the run length.
"""

import argparse
import sys
import uuid
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.quality import learner_scorer  # noqa: E402
from guards.settings import GuardSettings  # noqa: E402
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate  # noqa: E402
from learner.aggregates import AggregateCache  # noqa: E402
from learner.feedback import METHODS  # noqa: E402
from learner.layout import ShardKeys  # noqa: E402
from learner.loop import Learner  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from learner.settings import LearnerSettings  # noqa: E402
from stream.events import Event, Rejection, parse_event  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.heldout import held_out, quality  # noqa: E402


def partitioned(records: list[SimRecord], n: int) -> list[list[Event]]:
    """The events of each partition, in order; a user's events all on one."""
    parts: list[list[Event]] = [[] for _ in range(n)]
    for record in records:
        event = parse_event(record.value)
        if not isinstance(event, Rejection):
            parts[zlib.crc32(event.user_id.encode()) % n].append(event)
    return parts


def read(learner: Learner, parts: list[list[Event]], run: int) -> None:
    """Every partition `run` events at a time, round robin, as a consumer catching up."""
    learner.ends = {p: len(events) for p, events in enumerate(parts)}
    position = [0] * len(parts)
    while any(position[p] < len(events) for p, events in enumerate(parts)):
        for p, events in enumerate(parts):
            chunk = events[position[p] : position[p] + run]
            learner.prefetch(chunk)
            for offset, event in enumerate(chunk, position[p]):
                learner.process(event, p, offset)
            position[p] += len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--runs", default="250,5000", help="records of a partition a read")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()

    config = SimulatorConfig(seed=args.seed, count=args.count)
    records = list(generate(config))
    parts = partitioned(records, args.partitions)
    data = held_out(config, 1_000)
    end = records[-1].ts_ms / 1000
    client = connect(StreamSettings())
    print(f"seed {args.seed}, {len(records):,} records on {args.partitions} partitions")
    print("| method | records a read | held-out / hidden | calibration | adapted to a drift |")
    print("| --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        for run in (int(r) for r in args.runs.split(",")):
            keys = ShardKeys(f"bench-backlog-{uuid.uuid4().hex[:8]}", "main")
            settings = LearnerSettings(metrics_port=0, delayed_feedback=method)
            learner = Learner(settings, keys, AggregateCache(client), GuardSettings())
            try:
                read(learner, parts, run)
                result = quality(data, learner_scorer(learner, "main", end))
            finally:
                for key in client.scan_iter(match=f"{keys.prefix}:*", count=1000):
                    client.delete(key)
            print(
                f"| {method} | {run:,} | {result.ratio:.3f} | {result.calibration:.2f} "
                f"| {learner.counts['adapted']} |"
            )


if __name__ == "__main__":
    main()
