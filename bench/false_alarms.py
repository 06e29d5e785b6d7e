"""False alarms of the drift guard on the store simulator's clean streams, per signal.

    .venv/bin/python bench/false_alarms.py [--seeds 20] [--first 0] [--records 60000]

Each seed's clean stream (no drift, no attack) goes through the learner's own core
(`learner.loop.Learner`, one partition, shipped settings), as in bench/drift.py's
simulator row: the served variant's drift monitor is watched as the learner calls it,
and every alert it opens is counted by signal (`error`, `label`, `loss`, ...). The
learner adapts on the performance alerts as it does in production, so what it served
after a false alarm is what production would have served.

Then the calls the monitor saw (log loss, features, prediction, label) are replayed
through three fresh monitors: the shipped settings (a check: it must find what the live
one found), the same with `drift_error_label_mix` off (the error window judging a rise
against the older error rate alone, as before the label mix was taken into account), and
the same with `drift_loss_label_mix` off (the mean-loss window judging a rise against the
older mean loss alone), so each gate is judged on the same predictions in the same run. Alerts in
the first 1,000 examples are not counted (as in bench/drift.py). Needs a Redis
(HEADRACE_REDIS_URL) for the aggregates; its keys are deleted afterwards.
"""

import argparse
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.drift import watched_run  # noqa: E402
from guards.alerts import Alert  # noqa: E402
from guards.drift import DriftMonitor  # noqa: E402
from guards.settings import GuardSettings  # noqa: E402
from headrace.sim.simulator import SimulatorConfig, generate  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402

BURN_IN = 1_000
Call = tuple[float, Mapping[str, float | str], float, float, bool]


class Recorder:
    """A drift monitor, watched: every call, and the alerts it opened (example, signal)."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor
        self.calls: list[Call] = []
        self.alerts: list[tuple[int, str]] = []

    def update(
        self, loss: float, x: Mapping[str, float | str], p: float, ts: float, y: bool
    ) -> list[Alert]:
        self.calls.append((loss, dict(x), p, ts, y))
        found: list[Alert] = self.monitor.update(loss, x, p, ts, y)
        self.alerts += [(len(self.calls), a.signal) for a in found if a.ends is None]
        return found

    def reset(self) -> None:
        self.monitor.reset()


def live(client: Any, seed: int, records: int) -> Recorder:
    """The clean stream of `seed` through the learner's core; its served monitor, watched."""
    stream = list(generate(SimulatorConfig(seed=seed, count=records)))
    return watched_run(client, stream, "bench-fa", Recorder)


def replay(calls: list[Call], settings: GuardSettings) -> list[tuple[int, str]]:
    monitor = DriftMonitor("bench", "main", settings)
    found = []
    for i, (loss, x, p, ts, y) in enumerate(calls, 1):
        found += [(i, a.signal) for a in monitor.update(loss, x, p, ts, y) if a.ends is None]
    return found


def counted(alerts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(i, s) for i, s in alerts if i > BURN_IN]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--records", type=int, default=60_000)
    args = parser.parse_args()
    began = time.perf_counter()
    client = connect(StreamSettings())
    replays = {
        "shipped": GuardSettings(),
        "error mix off": GuardSettings(drift_error_label_mix=False),
        "loss mix off": GuardSettings(drift_loss_label_mix=False),
    }
    totals: dict[str, Counter[str]] = {n: Counter() for n in ("live", *replays)}
    examples = 0
    columns = " | ".join(f"replay, {n}" for n in replays)
    print(f"| seed | examples | positive rate | live alerts | {columns} |")
    print("| --- | --- | --- | --- |" + " --- |" * len(replays))
    for seed in range(args.first, args.first + args.seeds):
        recorder = live(client, seed, args.records)
        calls = recorder.calls
        runs = {"live": counted(recorder.alerts)}
        runs |= {n: counted(replay(calls, settings)) for n, settings in replays.items()}
        examples += max(len(calls) - BURN_IN, 0)
        rate = sum(c[4] for c in calls) / max(len(calls), 1)
        cells = [str(seed), f"{len(calls):,}", f"{rate:.4f}"]
        for name, found in runs.items():
            totals[name].update(s for _, s in found)
            cells.append(", ".join(f"{s}@{i:,}" for i, s in found) or "none")
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nClean examples counted (after the first {BURN_IN:,} of each seed): {examples:,}")
    print(f"\n| signal | live | {columns} |")
    print("| --- | --- |" + " --- |" * len(replays))
    signals = sorted(set().union(*totals.values()))
    for s in signals or ["(none)"]:
        print(f"| {s} | " + " | ".join(str(totals[n][s]) for n in totals) + " |")
    shipped = sum(totals["shipped"].values())
    for name in ("error mix off", "loss mix off"):
        off = sum(totals[name].values())
        ratio = shipped / max(off, 1)
        print(f"all signals: replay shipped {shipped}, {name} {off} (ratio {ratio:.2f})")
    print(f"{time.perf_counter() - began:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
