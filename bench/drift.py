"""Drift benchmark: the guards against River's own detectors on River's drift streams.

    .venv/bin/python bench/drift.py [--seeds 3] [--position 20000] [--only SEA]
        [--sim-records 60000] [--skip-sim]

Each stream is one of River's synthetic generators with a concept drift at a known
position (River's `ConceptDriftStream`: abrupt, width 1, or gradual, width 2,000),
and its clean twin (the first concept only, as long). A River model (standard scaler
and logistic regression, the learner's kind of model) learns it progressively:
predict, then learn. The same predictions feed

  - the guards' `DriftMonitor` at the shipped settings, as the learner calls it
    (log loss, features, prediction, label); any alert counts;
  - River's ADWIN, PageHinkley and KSWIN at River's defaults, on the 0/1 error.

FriedmanDrift is a regression stream: its label is y > 14.4 (the first concept's median),
its abrupt drift River's global recurring one ("gra") and its gradual one the global
slow one ("gsg": half the examples from the new concept for 2,000 examples, then all).

The simulator's store (headrace/sim), with a drift (tastes inverted at half the records)
and its clean twin, goes through the learner's own core (`learner.loop.Learner`, one
partition, shipped settings); the monitor the learner built is watched as it is called,
and River's detectors are fed the same predictions and labels. Its aggregates need a
Redis (HEADRACE_REDIS_URL, e.g. the local stack: `headrace stack up`); --skip-sim leaves
it out. Its drift position is the first example whose impression came after the drift.

Alarms in the first 1,000 examples are not counted for anyone (River's detectors fire
on a fresh model's falling error). Per stream, over the seeds, it prints the median
detection delay (first alarm from the drift's start on, position - width: River's gradual
drift is a sigmoid with tails; in examples after its position),
the misses, and the false alarms per million clean examples (the clean twin, and the
drifted stream before its drift starts); the last columns are the guards' delay minus
ADWIN's, worst seed (the target: at most 500): against ADWIN's first alarm, and against
its first alarm on a rise of the error (River's ADWIN also cuts when the error falls: a
model still improving, or a new concept that is easier).
"""

import argparse
import itertools
import math
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from river import compose, drift, linear_model, preprocessing
from river.datasets import synth

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guards.alerts import Alert  # noqa: E402
from guards.drift import DriftMonitor  # noqa: E402
from guards.kswin import KSWIN  # noqa: E402
from guards.settings import GuardSettings  # noqa: E402
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate  # noqa: E402
from learner.aggregates import AggregateCache  # noqa: E402
from learner.layout import ShardKeys  # noqa: E402
from learner.loop import Learner  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from learner.settings import LearnerSettings  # noqa: E402
from stream.events import Rejection, parse_event  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402

W = TypeVar("W")

BURN_IN = 1_000
GRADUAL = 2_000
DETECTORS = ("guards", "adwin", "page_hinkley", "kswin")
FRIEDMAN_CUT = 14.4
"""FriedmanDrift's label: y above its first concept's median (14.42 over 20,000 examples)."""
Example = tuple[dict[str, Any], bool]
Concept = Callable[[int], Any]
"""A River generator of one concept, from a seed."""


Source = Callable[[int, int, int, int], Iterator[tuple[dict[Any, Any], Any]]]
"""(seed, n, position, width) -> n examples, drifting at position (none when width is 0)."""


@dataclass(frozen=True)
class Stream:
    name: str
    before: Concept
    after: Concept
    label: Callable[[Any], bool] = bool
    categorical: bool = False
    source: Source | None = field(default=None)
    """Where a generator drifts by itself (FriedmanDrift); else before/after are mixed."""


def friedman(seed: int, n: int, position: int, width: int) -> Iterator[tuple[dict[Any, Any], Any]]:
    far = 10**9  # a change point past the stream's end: no drift
    if width > 1:
        # "gsg": from its change point, half the examples follow the new concept for
        # `transition_window` examples, then all: the drift starts at position - width.
        start = position - width
        gen = synth.FriedmanDrift("gsg", (start, far), transition_window=width, seed=seed)
    else:
        gen = synth.FriedmanDrift("gra", (position if width else far, far + 1), seed=seed)
    return iter(gen.take(n))


STREAMS = [
    Stream("SEA 0→3", lambda s: synth.SEA(variant=0, seed=s), lambda s: synth.SEA(3, seed=s)),
    Stream(
        "Agrawal 0→4",
        lambda s: synth.Agrawal(0, seed=s),
        lambda s: synth.Agrawal(4, seed=s),
    ),
    Stream(
        "STAGGER 0→2",
        lambda s: synth.STAGGER(0, seed=s),
        lambda s: synth.STAGGER(2, seed=s),
        categorical=True,
    ),
    Stream(
        "Hyperplane new plane",
        lambda s: synth.Hyperplane(seed=s),
        lambda s: synth.Hyperplane(seed=s + 1_000),
    ),
    Stream(
        "RandomRBFDrift new centroids",
        lambda s: synth.RandomRBFDrift(seed_model=s, seed_sample=s),
        lambda s: synth.RandomRBFDrift(seed_model=s + 1_000, seed_sample=s),
    ),
    Stream(
        "LEDDrift 0→7 swapped (odd digit)",
        lambda s: synth.LEDDrift(seed=s, noise_percentage=0.1, irrelevant_features=True),
        lambda s: synth.LEDDrift(
            seed=s, noise_percentage=0.1, irrelevant_features=True, n_drift_features=7
        ),
        label=lambda y: int(y) % 2 == 1,
    ),
    Stream("Mixed 0→1", lambda s: synth.Mixed(0, seed=s), lambda s: synth.Mixed(1, seed=s)),
    Stream("Sine 0→1", lambda s: synth.Sine(0, seed=s), lambda s: synth.Sine(1, seed=s)),
    Stream(
        "FriedmanDrift global (y > 14.4)",
        lambda s: None,
        lambda s: None,
        label=lambda y: float(y) > FRIEDMAN_CUT,
        source=friedman,
    ),
]


def examples(stream: Stream, seed: int, n: int, position: int, width: int) -> Iterator[Example]:
    """`n` examples; a drift centred on `position` (none when width is 0: the clean twin)."""
    source: Iterator[tuple[dict[Any, Any], Any]]
    if stream.source is not None:
        source = stream.source(seed, n, position, width)
    elif width > 1:
        concepts = stream.before(seed), stream.after(seed)
        drifted = synth.ConceptDriftStream(*concepts, position=position, width=width, seed=seed)
        source = drifted.take(n)
    elif width == 1:  # River's sigmoid overflows at width 1: switch concepts outright
        after = stream.after(seed + 7_919).take(n - position)
        source = itertools.chain(stream.before(seed).take(position), after)
    else:
        source = stream.before(seed).take(n)
    for x, y in source:
        if stream.categorical:
            x = {k: str(v) for k, v in x.items()}
        yield {str(k): v for k, v in x.items()}, stream.label(y)


def model(categorical: bool) -> Any:
    encode = preprocessing.OneHotEncoder() if categorical else preprocessing.StandardScaler()
    return compose.Pipeline(encode, linear_model.LogisticRegression())


def alarms(stream: Stream, seed: int, n: int, position: int, width: int) -> dict[str, list[int]]:
    """Where each detector alarmed (example numbers, 1-based)."""
    learner = model(stream.categorical)
    monitor = DriftMonitor("bench", "main", GuardSettings())
    river = river_detectors(seed)
    found: dict[str, list[int]] = {name: [] for name in (*DETECTORS, RISE)}
    for i, (x, y) in enumerate(examples(stream, seed, n, position, width), 1):
        p = learner.predict_proba_one(x).get(True, 0.5)
        q = min(max(p if y else 1.0 - p, 1e-15), 1.0)
        if _starts(monitor.update(-math.log(q), x, p, float(i), y)) and i > BURN_IN:
            found["guards"].append(i)
        river_update(river, found, i, p, y)
        learner.learn_one(x, y)
    return found


RISE = "adwin_rise"
"""River's ADWIN's cuts after which the error of what it kept is above what it dropped."""


def river_detectors(seed: int) -> dict[str, Any]:
    return {
        "adwin": drift.ADWIN(),
        "page_hinkley": drift.PageHinkley(),
        # The guards' KSWIN is River's with a faster call of the same KS test.
        "kswin": KSWIN(seed=seed),
    }


def river_update(
    river: dict[str, Any], found: dict[str, list[int]], i: int, p: float, y: bool
) -> None:
    wrong = float((p >= 0.5) != y)
    adwin = river["adwin"]
    size, total = adwin.width, adwin.total
    for name, detector in river.items():
        detector.update(wrong)
        if detector.drift_detected and i > BURN_IN:
            found[name].append(i)
    if adwin.drift_detected and i > BURN_IN:
        dropped = size + 1 - adwin.width
        if adwin.estimation > (total + wrong - adwin.total) / max(dropped, 1):
            found[RISE].append(i)


def _starts(alerts: list[Alert]) -> bool:
    """Whether any of these is an alert (not the record that closes one)."""
    return any(a.ends is None for a in alerts)


@dataclass
class Tally:
    delays: list[int]
    misses: int = 0
    false_alarms: int = 0
    clean: int = 0


Run = Callable[[int, int], tuple[dict[str, list[int]], int, int]]
"""(seed, width) -> alarms, the drift's position and the examples counted (width 0: clean)."""


def header() -> None:
    cells = ["stream", "drift"]
    for name in DETECTORS:
        cells += [f"{name} delay", "miss", "FA/M"]
    cells += ["guards - ADWIN", "guards - ADWIN on a rise"]
    print("| " + " | ".join(cells) + " |")
    print("|" + " --- |" * len(cells))


def run(streams: list[Stream], seeds: int, position: int, kinds: dict[str, int]) -> None:
    n = 2 * position
    header()
    for stream in streams:

        def one(seed: int, width: int, stream: Stream = stream) -> Any:
            return alarms(stream, seed, n, position, width), position, n

        table(stream.name, one, seeds, kinds)


def table(name: str, one: Run, seeds: int, kinds: dict[str, int]) -> None:
    """One row per kind of drift: `one(seed, width)` runs a stream (width 0: its clean twin)."""
    clean = [one(seed, 0) for seed in range(seeds)]
    for kind, width in kinds.items():
        tallies = {d: Tally([]) for d in DETECTORS}
        gaps: list[int] = []
        rise_gaps: list[int] = []
        for seed in range(seeds):
            found, position, _ = one(seed, width)
            start = position - width
            clean_found, _, clean_n = clean[seed]
            first: dict[str, int | None] = {}
            for d in (*DETECTORS, RISE):
                after = [a for a in found[d] if a >= start]
                first[d] = after[0] - position if after else None
                if d == RISE:
                    continue
                tally = tallies[d]
                if after:
                    tally.delays.append(after[0] - position)
                else:
                    tally.misses += 1
                tally.false_alarms += sum(a < start for a in found[d])
                tally.false_alarms += len(clean_found[d])
                tally.clean += start - BURN_IN + clean_n - BURN_IN
            g = first["guards"]
            for target, gap_list in ((first["adwin"], gaps), (first[RISE], rise_gaps)):
                if target is not None:
                    gap_list.append(g - target if g is not None else 10**9)
        row = [name, kind]
        for d in DETECTORS:
            t = tallies[d]
            delay = f"{statistics.median(t.delays):.0f}" if t.delays else "-"
            rate = 1e6 * t.false_alarms / t.clean
            row += [delay, f"{t.misses}/{seeds}", f"{rate:.0f}"]
        for gap_list in (gaps, rise_gaps):
            worst = max(gap_list) if gap_list else None
            row.append("-" if worst is None else "miss" if worst >= 10**9 else f"{worst:+d}")
        print("| " + " | ".join(row) + " |", flush=True)


class Recorder:
    """The learner's drift monitor, watched: what it was called with and where it alerted."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor
        self.calls: list[tuple[float, bool, float]] = []  # (p, y, ts)
        self.alerts: list[int] = []

    def update(
        self, loss: float, x: Mapping[str, float | str], p: float, ts: float, y: bool
    ) -> list[Alert]:
        self.calls.append((p, y, ts))
        found: list[Alert] = self.monitor.update(loss, x, p, ts, y)
        if _starts(found):
            self.alerts.append(len(self.calls))
        return found

    def reset(self) -> None:
        self.monitor.reset()


def watched_run(
    client: Any, stream: Sequence[SimRecord], prefix: str, watch: Callable[[DriftMonitor], W]
) -> W:
    """A simulator stream through the learner's core (one partition, shipped settings), each
    variant's drift monitor wrapped by `watch` as the learner calls it; the served variant's
    (the first). Its aggregates go to Redis under a fresh `prefix`, deleted afterwards."""
    prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
    learner = Learner(
        LearnerSettings(metrics_port=0),
        ShardKeys(prefix, "main"),
        AggregateCache(client),
        GuardSettings(),
    )
    watched = {name: watch(m) for name, m in learner.monitors.items()}
    learner.monitors = watched  # type: ignore[assignment]
    try:
        for begin in range(0, len(stream), 500):
            parsed = [parse_event(r.value) for r in stream[begin : begin + 500]]
            learner.prefetch(e for e in parsed if not isinstance(e, Rejection))
            for offset, event in enumerate(parsed, begin):
                if isinstance(event, Rejection):
                    learner.skip(0, offset)
                else:
                    learner.process(event, 0, offset)
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    return next(iter(watched.values()))


def simulated(
    client: Any, seed: int, records: int, drift: bool
) -> tuple[dict[str, list[int]], int, int]:
    """The store simulator through the learner's core; alarms by example number."""
    config = SimulatorConfig(seed=seed, count=records, drift_at=records // 2 if drift else None)
    stream = list(generate(config))
    recorder = watched_run(client, stream, "bench-drift", Recorder)
    found: dict[str, list[int]] = {name: [] for name in (*DETECTORS, RISE)}
    found["guards"] = [a for a in recorder.alerts if a > BURN_IN]
    river = river_detectors(seed)
    for i, (p, y, _) in enumerate(recorder.calls, 1):
        river_update(river, found, i, p, y)
    n = len(recorder.calls)
    position = n + 1
    if drift:
        assert config.drift_at is not None
        at = stream[config.drift_at].ts_ms / 1000
        position = next((i for i, c in enumerate(recorder.calls, 1) if c[2] >= at), n + 1)
    return found, position, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--position", type=int, default=20_000)
    parser.add_argument("--only", default="", help="streams whose name starts with this")
    parser.add_argument("--sim-records", type=int, default=60_000)
    parser.add_argument("--skip-sim", action="store_true", help="no simulator (no Redis)")
    args = parser.parse_args()
    began = time.perf_counter()
    streams = [s for s in STREAMS if s.name.startswith(args.only)]
    if streams:
        run(streams, args.seeds, args.position, {"abrupt": 1, "gradual": GRADUAL})
    if not args.skip_sim and "simulator".startswith(args.only[:9].lower()):
        client = connect(StreamSettings())

        def sim(seed: int, width: int) -> Any:
            return simulated(client, seed, args.sim_records, drift=width > 0)

        print(f"\nThe store simulator, {args.sim_records:,} records, drift at half:\n")
        header()
        table("simulator (store)", sim, args.seeds, {"tastes inverted": 1})
    # A drift soon after the start, as a new user first tries it: SEA at 10,000, width 1,000.
    sea = [s for s in streams if s.name.startswith("SEA")]
    if sea:
        print("\nSEA as issue 13 measured it:\n")
        run(sea, args.seeds, 10_000, {"at 10,000, width 1,000": 1_000})
    print(f"\n{time.perf_counter() - began:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
