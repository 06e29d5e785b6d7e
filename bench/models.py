"""How fast each model kind learns and predicts, how big its state is, how fast it serves.

    .venv/bin/python bench/models.py [--events 100000] [--repeat 5]

The synthetic events are those of docs' MEASURED figures: 20 numeric features and two
categorical ones of 50 values each. Times are medians of `--repeat` runs; this machine is
noisy, so compare the ratios printed side by side (measured in the same run).
"""

import argparse
import math
import pickle
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from learner import modelcodec
from learner.linear import LinearScorer
from learner.models import MODEL_KINDS, build_model

Features = dict[str, float | str]


def events(n: int, seed: int = 0) -> list[tuple[Features, bool]]:
    """`n` labelled events: 20 numeric features, 2 categorical ones of 50 values each."""
    rng = random.Random(seed)
    weights = [rng.gauss(0, 1) for _ in range(20)]
    effects = [{f"v{j}": rng.gauss(0, 1) for j in range(50)} for _ in range(2)]
    out: list[tuple[Features, bool]] = []
    for _ in range(n):
        x: Features = {f"f{i}": rng.gauss(0, 1) * (i + 1) for i in range(20)}
        z = sum(w * float(x[f"f{i}"]) / (i + 1) for i, w in enumerate(weights))
        for c, effect in enumerate(effects):
            value = f"v{rng.randrange(50)}"
            x[f"c{c}"] = value
            z += effect[value]
        out.append((x, rng.random() < 1 / (1 + math.exp(-z))))
    return out


def median_seconds(run: Callable[[], object], repeat: int, number: int = 1) -> float:
    """Median over `repeat` runs of the time one call of `run` takes."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            run()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def bench_kind(kind: str, data: list[tuple[Features, bool]], repeat: int) -> Any:
    model = build_model(kind)
    start = time.perf_counter()
    for x, y in data:
        model.learn_one(x, y)
    learn_rate = len(data) / (time.perf_counter() - start)
    probe = [x for x, _ in data[:10_000]]
    start = time.perf_counter()
    for x in probe:
        model.predict_proba_one(x)
    predict_rate = len(probe) / (time.perf_counter() - start)
    print(f"\n## {kind}, after {len(data):,} events")
    print(f"learn_one/s          {learn_rate:12,.0f}")
    print(f"predict_proba_one/s  {predict_rate:12,.0f}")

    plain = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    raw = modelcodec.dumps(model, compress=False)
    blob = modelcodec.dumps(model)
    number = 200 if len(raw) < 100_000 else 3
    print(f"plain pickle         {len(plain):12,} bytes")
    print(f"codec, uncompressed  {len(raw):12,} bytes")
    print(f"codec, as published  {len(blob):12,} bytes ({'zlib' if blob[4] else 'raw'})")
    rows = [
        ("pickle.dumps", lambda: pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)),
        ("pickle.loads", lambda: pickle.loads(plain)),
        ("codec.dumps raw", lambda: modelcodec.dumps(model, compress=False)),
        ("codec.dumps", lambda: modelcodec.dumps(model)),
        ("codec.loads", lambda: modelcodec.loads(blob)),
    ]
    for label, run in rows:
        print(f"{label:<20} {median_seconds(run, repeat, number) * 1e6:12,.0f} us")
    return model


def bench_scoring(model: Any, data: list[tuple[Features, bool]], repeat: int) -> None:
    start = time.perf_counter()
    scorer = LinearScorer.from_model(model)
    built = time.perf_counter() - start
    assert scorer is not None
    print(f"\n## logreg served: River loop vs LinearScorer (built in {built * 1e6:,.0f} us)")
    print(f"{'candidates':>10} {'River loop':>12} {'score_many':>12} {'ratio':>7}", end="")
    print(f" {'score_columns':>14} {'ratio':>7}")
    for n in (1, 100, 1000):
        river, many, cols = time_scoring(model, scorer, [x for x, _ in data[:n]], repeat)
        print(
            f"{n:>10} {river * 1e6:>9,.0f} us {many * 1e6:>9,.0f} us {river / many:>6.1f}x"
            f" {cols * 1e6:>11,.0f} us {river / cols:>6.1f}x"
        )


def time_scoring(
    model: Any, scorer: LinearScorer, rows: list[Features], repeat: int
) -> tuple[float, float, float]:
    """Seconds per batch: River's loop, score_many, score_columns (same rows, checked)."""
    n = len(rows)
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in rows[0]}
    expected = [model.predict_proba_one(row)[True] for row in rows]
    for got in (scorer.score_many(rows), scorer.score_columns(columns, n)):
        assert max(abs(a - b) for a, b in zip(got.tolist(), expected, strict=True)) < 1e-9
    number = max(1, 2000 // n)
    return (
        median_seconds(lambda: [model.predict_proba_one(row) for row in rows], repeat, number),
        median_seconds(lambda: scorer.score_many(rows), repeat, number),
        median_seconds(lambda: scorer.score_columns(columns, n), repeat, number),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000, help="events to learn")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing (median)")
    args = parser.parse_args()
    data = events(args.events)
    models = {kind: bench_kind(kind, data, args.repeat) for kind in MODEL_KINDS}
    bench_scoring(models["logreg"], data, args.repeat)


if __name__ == "__main__":
    main()
