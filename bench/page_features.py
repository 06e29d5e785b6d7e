"""A page's impressions learned with the aggregates at the page's start, against point in time.

    .venv/bin/python bench/page_features.py --seeds 1212,7219 [--count 60000]

No Redis: like bench/taste_gap.py it replays the learner's features and gives every
impression, with its true label, to River's logistic pipeline as shipped
(`build_model("logreg")`, labels known at once). Two replays of the same stream:

- point in time (what the learner does): an impression's features read the shopper's
  aggregates after the page's earlier impressions were counted, so the position carries
  the page's own impressions with it (more impressions, lower rates, further down);
- page start: the impressions of a page (a shopper's impressions from one at position 0
  to the next) read the shopper's aggregates as they were at the page's first impression:
  what the API scored the whole page with.

Then the 1,000 held-out requests (tests/heldout.py) are scored at positions 0, 4 and 9
(the context's position set, the hidden probabilities moved by the simulator's own
position effect): calibration by position says whether the model's position effect is
the hidden one (flat) or too weak (rising down the page). Both replays learn the same
examples (checked).
"""

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headrace.sim.simulator import SimRecord, SimulatorConfig, generate  # noqa: E402
from headrace.sim.store_world import _POSITION_COEF  # noqa: E402
from learner.features import (  # noqa: E402
    FeatureConfig,
    features,
    observe_impression,
    observe_outcome,
)
from learner.models import build_model, logreg_parts  # noqa: E402
from stream.events import Impression, Item, Rejection, parse_event  # noqa: E402
from tests.heldout import HeldOut, expected_auc, held_out  # noqa: E402

Aggregates = dict[str, dict[str, float]]
POSITIONS = (0, 4, 9)


def replay(
    records: list[SimRecord], page_start: bool, config: FeatureConfig
) -> tuple[object, Aggregates, Aggregates, int]:
    """River's pipeline after every impression of the stream; the aggregates at the end."""
    users: Aggregates = {}
    items: Aggregates = {}
    shown: dict[str, Item] = {}
    at_start: Aggregates = {}
    model = build_model("logreg")
    learned = 0
    for record in records:
        event = parse_event(record.value)
        if isinstance(event, Rejection) or event.type == "labeled":
            continue
        at = event.ts.timestamp()
        user = users.setdefault(event.user_id, {})
        item_aggs = items.setdefault(event.item_id, {})
        if isinstance(event, Impression):
            if event.context.position == 0 or event.user_id not in at_start:
                at_start[event.user_id] = copy.copy(user)
            seen = at_start[event.user_id] if page_start else user
            model.learn_one(
                features(event.context, event.item, seen, item_aggs, at, config),
                bool(record.will_purchase),
            )
            learned += 1
            observe_impression(user, item_aggs, event.item, at, config, event.context)
            shown[event.impression_id] = event.item
        else:
            item = shown.get(event.impression_id or "")
            observe_outcome(user, item_aggs, event.type, item, at, config)
    return model, users, items, learned


def by_position(
    model: object, users: Aggregates, items: Aggregates, data: HeldOut, at: float
) -> tuple[float, list[float]]:
    """(held-out ratio at position 0, calibration at each of POSITIONS)."""
    config = FeatureConfig()
    ratio, cells = 0.0, []
    for position in POSITIONS:
        scores = np.array(
            [
                model.predict_proba_one(  # type: ignore[attr-defined]
                    features(
                        r.context.model_copy(update={"position": position}),
                        c.item,
                        users.get(r.user_id, {}),
                        items.get(c.item_id, {}),
                        at,
                        config,
                    )
                ).get(True, 0.0)
                for r in data.requests
                for c in r.candidates
            ]
        )
        logit = np.log(data.p / (1.0 - data.p)) + _POSITION_COEF[0] * np.log1p(position)
        hidden = 1.0 / (1.0 + np.exp(-logit))
        if position == 0:
            ratio = expected_auc(data.p, scores) / expected_auc(data.p, data.p)
        cells.append(float(scores.mean() / hidden.mean()))
    return ratio, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1212,7219")
    parser.add_argument("--count", type=int, default=60_000)
    args = parser.parse_args()
    print(
        "| seed | features | held-out ratio | calibration at position "
        + " / ".join(str(k) for k in POSITIONS)
        + " | weight of log_position |"
    )
    print("|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        config = SimulatorConfig(seed=seed, count=args.count, n_users=2_000, n_items=500)
        records = list(generate(config))
        data = held_out(config, 1_000)
        end = records[-1].ts_ms / 1000
        counts = []
        for page_start in (False, True):
            model, users, items, learned = replay(records, page_start, FeatureConfig())
            counts.append(learned)
            ratio, cells = by_position(model, users, items, data, end)
            parts = logreg_parts(model)
            weight = parts[1]._weights.get("log_position", 0.0) if parts is not None else 0.0
            name = "page start" if page_start else "point in time"
            print(
                f"| {seed} | {name} | {ratio:.4f} | "
                + " / ".join(f"{c:.3f}" for c in cells)
                + f" | {weight:.4f} |",
                flush=True,
            )
        assert counts[0] == counts[1]  # both replays learned the same examples


if __name__ == "__main__":
    main()
