"""The served model against the best possible, in a running demo: held-out requests over HTTP.

    .venv/bin/python bench/demo_quality.py --seed "$(cat .stack/demo.seed)" [--url http://127.0.0.1:8000]

`scripts/demo` streams the simulated yarn store with a seed of its own and writes it to
`.stack/demo.seed`. This sends that seed's held-out requests (tests/heldout.py: storefront
requests the learner never saw, every candidate at position 0 with its hidden purchase
probability) to `POST /predict` without publishing impressions, and prints for each variant
that answered them, next to what `/models` reports for it at that moment:

- the held-out expected ROC AUC and its ratio to the hidden model's on the same requests;
- the calibration: mean score over mean hidden probability;
- the rolling AUC and calibration of `/models` (what the dashboard draws), and the rolling
  AUC minus the held-out one.

Before the demo's drift (at 60,000 events) the requests come from the store as it was;
after it, `--drifted` asks for the store as it is then. The traffic split decides which
variant a shopper gets, so each variant is measured on its own share of the requests, and
the hidden model's AUC is taken on that same share.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from headrace.sim.simulator import SimulatorConfig  # noqa: E402
from tests.api.helpers import request_body  # noqa: E402
from tests.heldout import expected_auc, held_out  # noqa: E402


def variants_reported(models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each variant's entry of `/models`, by name (one shard: the demo's)."""
    return {
        str(variant["name"]): variant
        for shard in models["models"]
        for variant in shard.get("variants") or []
    }


def events_read(models: dict[str, Any]) -> int:
    """The records the served state reflects: the sum of its Kafka offsets."""

    def total(value: Any) -> int:
        if isinstance(value, dict):
            return sum(total(v) for v in value.values())
        return int(value) if isinstance(value, int | float) else 0

    return sum(total(shard.get("offsets") or {}) for shard in models["models"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True, help="the demo's (.stack/demo.seed)")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--n-users", type=int, default=SimulatorConfig().n_users)
    parser.add_argument("--n-items", type=int, default=SimulatorConfig().n_items)
    parser.add_argument("--drifted", action="store_true", help="the store after the drift")
    args = parser.parse_args()

    config = SimulatorConfig(seed=args.seed, n_users=args.n_users, n_items=args.n_items)
    data = held_out(config, args.requests, drifted=args.drifted)
    with httpx.Client(base_url=args.url, timeout=10.0) as client:
        before = client.get("/models").raise_for_status().json()
        answered: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        start = 0
        for request in data.requests:
            n = len(request.candidates)
            # Publishing no impressions: the learner must not learn the held-out requests.
            reply = client.post("/predict", json=request_body(request, publish_impressions=False))
            if reply.status_code != 200:
                raise SystemExit(f"POST /predict: {reply.status_code} {reply.text}")
            answer = reply.json()
            scores, hidden = answered.setdefault(answer["variant"], ([], []))
            scores.append(np.array([s["score"] for s in answer["scores"]], dtype=np.float64))
            hidden.append(data.p[start : start + n])
            start += n
        after = client.get("/models").raise_for_status().json()

    print(
        f"seed {args.seed}: {args.requests:,} held-out requests of "
        f"{len(data.requests[0].candidates)} candidates"
        f"{' (the store after the drift)' if args.drifted else ''}; the served state had "
        f"read {events_read(before):,} to {events_read(after):,} records meanwhile"
    )
    print(
        "| variant | requests | held-out AUC | / hidden | calibration "
        "| /models rolling AUC | rolling calibration | rolling - held-out |"
    )
    print("|---|---|---|---|---|---|---|---|")
    reported = variants_reported(after)
    for name, (scores, hidden) in sorted(answered.items()):
        s, p = np.concatenate(scores), np.concatenate(hidden)
        auc, best = expected_auc(p, s), expected_auc(p, p)
        metrics = reported.get(name, {}).get("metrics") or {}
        rolling, rolling_cal = metrics.get("rolling_roc_auc"), metrics.get("rolling_calibration")
        gap = f"{rolling - auc:+.3f}" if isinstance(rolling, float) else "n/a"
        print(
            f"| {name} | {len(scores):,} | {auc:.3f} | {auc / best:.3f} "
            f"| {s.mean() / p.mean():.2f} "
            f"| {rolling if rolling is None else f'{rolling:.3f}'} "
            f"| {rolling_cal if rolling_cal is None else f'{rolling_cal:.2f}'} | {gap} |"
        )


if __name__ == "__main__":
    main()
