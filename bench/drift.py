"""Drift benchmark: the guards against River's own detectors on River's drift streams.

    .venv/bin/python bench/drift.py [--seeds 3] [--position 20000] [--only SEA]

Each stream is one of River's synthetic generators with a concept drift at a known
position (River's `ConceptDriftStream`: abrupt, width 1, or gradual, width 2,000),
and its clean twin (the first concept only, as long). A River model (standard scaler
and logistic regression, the learner's kind of model) learns it progressively:
predict, then learn. The same predictions feed

  - the guards' `DriftMonitor` at the shipped settings, as the learner calls it
    (log loss, features, prediction, label); any alert counts;
  - River's ADWIN, PageHinkley and KSWIN at River's defaults, on the 0/1 error.

Alarms in the first 1,000 examples are not counted for anyone (River's detectors fire
on a fresh model's falling error). Per stream, over the seeds, it prints the median
detection delay (first alarm from the drift's start on, position - width: River's gradual
drift is a sigmoid with tails; in examples after its position),
the misses, and the false alarms per million clean examples (the clean twin, and the
drifted stream before its drift starts); the last column is the guards' delay minus
ADWIN's, worst seed (the target: at most 500).
"""

import argparse
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from river import compose, drift, linear_model, preprocessing
from river.datasets import synth

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guards.drift import KSWIN, DriftMonitor  # noqa: E402
from guards.settings import GuardSettings  # noqa: E402

BURN_IN = 1_000
GRADUAL = 2_000
DETECTORS = ("guards", "adwin", "page_hinkley", "kswin")
Example = tuple[dict[str, Any], bool]
Concept = Callable[[int], Any]
"""A River generator of one concept, from a seed."""


@dataclass(frozen=True)
class Stream:
    name: str
    before: Concept
    after: Concept
    label: Callable[[Any], bool] = bool
    categorical: bool = False


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
]


def examples(stream: Stream, seed: int, n: int, position: int, width: int) -> Iterator[Example]:
    """`n` examples; a drift centred on `position` (none when width is 0: the clean twin)."""
    source: Iterator[tuple[dict[Any, Any], Any]]
    if width > 1:
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
    river = {
        "adwin": drift.ADWIN(),
        "page_hinkley": drift.PageHinkley(),
        # The guards' KSWIN is River's with a faster call of the same KS test.
        "kswin": KSWIN(seed=seed),
    }
    found: dict[str, list[int]] = {name: [] for name in DETECTORS}
    for i, (x, y) in enumerate(examples(stream, seed, n, position, width), 1):
        p = learner.predict_proba_one(x).get(True, 0.5)
        q = min(max(p if y else 1.0 - p, 1e-15), 1.0)
        if monitor.update(-math.log(q), x, p, float(i), y) and i > BURN_IN:
            found["guards"].append(i)
        wrong = float((p >= 0.5) != y)
        for name, detector in river.items():
            detector.update(wrong)
            if detector.drift_detected and i > BURN_IN:
                found[name].append(i)
        learner.learn_one(x, y)
    return found


@dataclass
class Tally:
    delays: list[int]
    misses: int = 0
    false_alarms: int = 0
    clean: int = 0


def run(streams: list[Stream], seeds: int, position: int, kinds: dict[str, int]) -> None:
    n = 2 * position
    header = ["stream", "drift"]
    for name in DETECTORS:
        header += [f"{name} delay", "miss", "FA/M"]
    header.append("guards - ADWIN")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for stream in streams:
        clean = [alarms(stream, seed, n, position, 0) for seed in range(seeds)]
        for kind, width in kinds.items():
            start = position - width
            tallies = {name: Tally([]) for name in DETECTORS}
            gaps: list[int] = []
            for seed in range(seeds):
                found = alarms(stream, seed, n, position, width)
                first: dict[str, int | None] = {}
                for name, tally in tallies.items():
                    after = [a for a in found[name] if a >= start]
                    first[name] = after[0] - position if after else None
                    if after:
                        tally.delays.append(after[0] - position)
                    else:
                        tally.misses += 1
                    tally.false_alarms += sum(a < start for a in found[name])
                    tally.false_alarms += len(clean[seed][name])
                    tally.clean += start - BURN_IN + n - BURN_IN
                g, a = first["guards"], first["adwin"]
                if a is not None:
                    gaps.append(g - a if g is not None else 10**9)
            row = [stream.name, kind]
            for name in DETECTORS:
                t = tallies[name]
                delay = f"{statistics.median(t.delays):.0f}" if t.delays else "-"
                rate = 1e6 * t.false_alarms / t.clean
                row += [delay, f"{t.misses}/{seeds}", f"{rate:.0f}"]
            worst = max(gaps) if gaps else None
            row.append("-" if worst is None else "miss" if worst >= 10**9 else f"{worst:+d}")
            print("| " + " | ".join(row) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--position", type=int, default=20_000)
    parser.add_argument("--only", default="", help="streams whose name starts with this")
    args = parser.parse_args()
    began = time.perf_counter()
    streams = [s for s in STREAMS if s.name.startswith(args.only)]
    run(streams, args.seeds, args.position, {"abrupt": 1, "gradual": GRADUAL})
    # A drift soon after the start, as a new user first tries it: SEA at 10,000, width 1,000.
    sea = [s for s in streams if s.name.startswith("SEA")]
    run(sea, args.seeds, 10_000, {"at 10,000, width 1,000": 1_000})
    print(f"\n{time.perf_counter() - began:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
