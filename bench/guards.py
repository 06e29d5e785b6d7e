"""Guards benchmark: what the guards cost the learner, and how soon they act.

    .venv/bin/python bench/guards.py [--events 100000]

Needs the local stack (`headrace stack up`, or set HEADRACE_* to a running one).
Prints, all measured in this run:
  1. the learner's events/s (a real `headrace learn` process, 3 partitions) on one
     simulated stream with a drift and a bot attack, with every guard on (fraud,
     drift, and rollback scoring a last-known-good shadow), and the same with
     HEADRACE_GUARDS_ENABLED=false (both with a snapshot every 5 s), and the cost
     as a ratio (target: guards cost under 25 %);
  2. the drift detection delay: events from the drift to the first loss alert
     (one partition; the stream is fed in steps of --step events);
  3. the rollback delay: events from the start of a poisoning the fraud rules miss
     to the automatic rollback (same method).
Each phase uses its own topics and Redis key prefix, deleted afterwards.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learn import cleanup, committed, fresh  # noqa: E402
from headrace.devstack import stack  # noqa: E402
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate  # noqa: E402
from learner import alertstore, control  # noqa: E402
from learner.layout import ShardKeys  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.guards.poison import LKG_AT, POISONED_ENV, poison  # noqa: E402
from tests.learner.harness import (  # noqa: E402
    LearnerProcess,
    caught_up,
    end_offsets,
    learner_env,
    send,
    shipped_env,
    wait_until,
)


def rate(
    base: StreamSettings, client: redis.Redis, records: list[SimRecord], log: Path, **env: object
) -> float:
    """Events/s of one learner process through `records` (timed from its first commit)."""
    settings = fresh(base, partitions=3)
    send(settings, records)
    total = sum(end_offsets(settings).values())
    proc = LearnerProcess(shipped_env(settings, **env), log)
    try:
        wait_until(lambda: committed(client, settings) > 0, 120, "the first commit")
        began, first = time.perf_counter(), committed(client, settings)
        while (done := committed(client, settings)) < total:
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
    finally:
        proc.stop()
    cleanup(client, settings)
    return (done - first) / elapsed


def cost(base: StreamSettings, client: redis.Redis, n: int, rounds: int, log: Path) -> None:
    config = SimulatorConfig(seed=1, count=n, drift_at=n // 2, attack_at=n // 4)
    records = list(generate(config))
    # Snapshots (every 5 s) in both runs, so the difference is the guards alone; with them
    # on, the rollback guard scores the last-known-good shadow on every example.
    folder = Path(tempfile.mkdtemp(prefix="headrace-bench-guards-"))
    try:
        snap = {"snapshot_interval_s": 5}
        ons: list[float] = []
        offs: list[float] = []
        # Alternated, so load from elsewhere on the machine falls on both alike.
        for i in range(rounds):
            ons.append(rate(base, client, records, log, snapshot_dir=folder / f"on{i}", **snap))
            offs.append(
                rate(
                    base,
                    client,
                    records,
                    log,
                    snapshot_dir=folder / f"off{i}",
                    guards_enabled="false",
                    **snap,
                )
            )
        on, off = statistics.median(ons), statistics.median(offs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def runs(rates: list[float]) -> str:
        return ", ".join(f"{r:,.0f}" for r in rates)

    print(f"learner, all guards on (LKG shadow scored): {on:,.0f} events/s (runs {runs(ons)})")
    print(f"learner, guards off:                         {off:,.0f} events/s (runs {runs(offs)})")
    print(
        f"guards cost {100 * (1 - on / off):.1f} % of the rate (on/off = {on / off:.2f}; "
        "target: cost under 25 %)"
    )


def stepwise_delay(
    settings: StreamSettings,
    client: redis.Redis,
    records: list[SimRecord],
    start: int,
    step: int,
    done: Callable[[], bool],
    log: Path,
    snapshot_at: int | None = None,
    **env: object,
) -> int | None:
    """Events after `start` until `done()`, feeding `step` events at a time (None: never)."""
    proc = LearnerProcess(learner_env(settings, **env), log)

    def learn(part: list[SimRecord]) -> None:
        send(settings, part)
        ends = end_offsets(settings)
        wait_until(lambda: caught_up(client, settings, ends), 300, "the learner")

    try:
        if snapshot_at is not None:
            # A last-known-good snapshot of the clean model there, scored in shadow after.
            learn(records[:snapshot_at])
            keys = ShardKeys(settings.key_prefix, "main")
            result = control.wait_result(client, keys, control.send(client, keys, "snapshot"), 60)
            assert result is not None and result["ok"], result
        learn(records[snapshot_at or 0 : start])
        delay = 0
        while not done() and start + delay < len(records):
            learn(records[start + delay : start + delay + step])
            delay += step
        return delay if done() else None
    finally:
        proc.stop()


def drift_delay(base: StreamSettings, client: redis.Redis, step: int, log: Path) -> None:
    drift_at = 70_000
    records = list(generate(SimulatorConfig(seed=7, count=100_000, drift_at=drift_at)))
    settings = fresh(base, partitions=1)

    def alerted() -> bool:
        found = alertstore.recent(client, settings.key_prefix, limit=alertstore.MAX_ALERTS)
        return any(a["signal"] == "loss" for a in found)

    delay = stepwise_delay(settings, client, records, drift_at, step, alerted, log)
    print(
        f"drift (seed 7, at event {drift_at:,}): first loss alert within {delay} events "
        f"(resolution {step})"
    )
    cleanup(client, settings)


def rollback_delay(base: StreamSettings, client: redis.Redis, step: int, log: Path) -> None:
    records, poison_at = poison(seed=8)
    settings = fresh(base, partitions=1)
    folder = Path(tempfile.mkdtemp(prefix="headrace-bench-guards-"))

    def rolled_back() -> bool:
        found = alertstore.recent(client, settings.key_prefix, limit=alertstore.MAX_ALERTS)
        return any(a["detector"] == "rollback" for a in found)

    try:
        env = {
            **POISONED_ENV,
            "snapshot_dir": folder,
            "snapshot_interval_s": 3600,  # only the one taken at LKG_AT
        }
        delay = stepwise_delay(
            settings, client, records, poison_at, step, rolled_back, log, LKG_AT, **env
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"poisoning (seed 8, from event {poison_at:,}): automatic rollback within {delay} "
        f"events (resolution {step})"
    )
    cleanup(client, settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="on/off runs, alternated")
    parser.add_argument("--step", type=int, default=250)
    parser.add_argument("--skip", nargs="*", default=[], choices=["cost", "drift", "rollback"])
    args = parser.parse_args()
    base = StreamSettings()
    print(stack.up(base))
    client = connect(base)
    name = f"headrace-bench-guards-{uuid.uuid4().hex[:6]}.log"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / name
    if "cost" not in args.skip:
        cost(base, client, args.events, args.rounds, log)
    if "drift" not in args.skip:
        drift_delay(base, client, args.step, log)
    if "rollback" not in args.skip:
        rollback_delay(base, client, args.step, log)


if __name__ == "__main__":
    main()
