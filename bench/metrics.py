"""Progressive metrics benchmark: what scoring an example costs, and how right the numbers are.

    .venv/bin/python bench/metrics.py [--records 300000] [--repeat 7]

No stack needed. On the impressions of one simulated stream, with the simulator's hidden
purchase probabilities as the predictions (about 5 % positives), prints:
  1. `ProgressiveMetrics.update` per call (best of --repeat runs over the whole stream),
     with the rolling window at 1,000 (the default) and 10,000;
  2. `report()` and `reliability()` per call, and the pickled state's size and time
     (the learner pickles it with every publish);
  3. the cumulative ROC AUC from the histogram against the exact AUC of the same
     predictions, with the error bound reported beside it; the cumulative PR AUC against
     the exact average precision; and River's `metrics.ROCAUC()` (ten thresholds) on the
     same stream, for comparison;
  4. the same ROC AUC numbers for the hidden probabilities squeezed towards their mean
     (a model less sure of itself: most predictions within a few percent), where more
     pairs share a bin.
"""

import argparse
import pickle
import sys
import timeit
from functools import partial
from pathlib import Path

import numpy as np
from river import metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guards.ranking import roc_auc  # noqa: E402
from headrace.sim.simulator import SimulatorConfig, generate  # noqa: E402
from learner import ranking  # noqa: E402
from learner.metrics import ProgressiveMetrics  # noqa: E402


def scored(records: int) -> list[tuple[bool, float]]:
    out = []
    for record in generate(SimulatorConfig(seed=3, count=records)):
        if record.p_purchase is not None and record.will_purchase is not None:
            out.append((record.will_purchase, record.p_purchase))
    return out


def fed(pairs: list[tuple[bool, float]], window: int) -> ProgressiveMetrics:
    progressive = ProgressiveMetrics(window)
    update = progressive.update
    for y, p in pairs:
        update(y, p)
    return progressive


def per_call_us(seconds: float, calls: int) -> str:
    return f"{seconds / calls * 1e6:.2f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    pairs = scored(args.records)
    y = np.array([label for label, _ in pairs])
    p = np.array([prob for _, prob in pairs])
    print(f"{len(pairs):,} scored examples, {y.mean():.2%} positive, mean p {p.mean():.4f}")

    for window in (1_000, 10_000):
        best = min(timeit.repeat(partial(fed, pairs, window), number=1, repeat=args.repeat))
        print(f"update, window {window:,}: {per_call_us(best, len(pairs))} a call")
        progressive = fed(pairs, window)
        n = 20
        report = min(timeit.repeat(progressive.report, number=n, repeat=5)) / n
        table = min(timeit.repeat(progressive.reliability, number=n, repeat=5)) / n
        blob = pickle.dumps(progressive, protocol=pickle.HIGHEST_PROTOCOL)
        dump = min(timeit.repeat(partial(pickle.dumps, progressive, 5), number=n, repeat=5))
        load = min(timeit.repeat(partial(pickle.loads, blob), number=n, repeat=5))
        print(
            f"  report {report * 1e3:.2f} ms, reliability {table * 1e3:.2f} ms, "
            f"pickled {len(blob):,} bytes (dump {dump / n * 1e3:.2f} ms, "
            f"load {load / n * 1e3:.2f} ms)"
        )

    values = fed(pairs, 1_000).report()
    exact_auc, exact_ap = roc_auc(y, p), ranking.average_precision(y, p)
    assert exact_auc is not None and exact_ap is not None
    river = metrics.ROCAUC()
    for label, prob in pairs:
        river.update(label, prob)
    auc, error, ap = values["roc_auc"], values["roc_auc_error"], values["pr_auc"]
    assert isinstance(auc, float) and isinstance(error, float) and isinstance(ap, float)
    print(
        f"ROC AUC: exact {exact_auc:.6f}, histogram {auc:.6f} (off by "
        f"{abs(auc - exact_auc):.1e}, bound reported {error:.1e}); River's ROCAUC() "
        f"{river.get():.4f}"
    )
    print(f"PR AUC: exact {exact_ap:.6f}, histogram {ap:.6f} (off by {abs(ap - exact_ap):.1e})")

    logit = np.log(p / (1 - p))
    noise = np.random.default_rng(1).normal(0, 0.05, len(p))
    squeezed = 1 / (1 + np.exp(-(logit.mean() + 0.15 * (logit - logit.mean()) + noise)))
    values = fed(list(zip(y.tolist(), squeezed.tolist(), strict=True)), 1_000).report()
    exact_auc = roc_auc(y, squeezed)
    auc, error = values["roc_auc"], values["roc_auc_error"]
    assert exact_auc is not None and isinstance(auc, float) and isinstance(error, float)
    low, high = np.percentile(squeezed, [5, 95])
    print(
        f"squeezed (90 % of p in {low:.4f}-{high:.4f}): ROC AUC exact {exact_auc:.6f}, "
        f"histogram {auc:.6f} (off by {abs(auc - exact_auc):.1e}, bound reported {error:.1e})"
    )


if __name__ == "__main__":
    main()
