"""bench/quality.py's anchors: the same examples learned with every label known at once."""

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from bench.quality_report import Row, scored_row
from headrace.sim.simulator import SimRecord
from headrace.sim.store_world import ShopRequest
from learner.features import (
    FeatureConfig,
    Features,
    features,
    observe_impression,
    observe_outcome,
)
from learner.models import build_model
from learner.storestats import StoreStats
from stream.events import Impression, Item, Rejection, parse_event
from tests.heldout import HeldOut

Aggregates = dict[str, dict[str, float]]


def replay(
    records: Iterable[SimRecord], config: FeatureConfig, model: Any
) -> tuple[list[tuple[Features, bool]], Aggregates, Aggregates, StoreStats]:
    """Each impression's features (the learner's, point in time) with its true label, and
    the users' and items' aggregates and the store-wide counts at the end: what the learner
    computes, without it. `model` learns each impression with its true label after serving
    it, as the learner's first variant does with what it knows: the aggregates count what
    it served."""
    store = StoreStats(config.half_life_s)
    users: Aggregates = {}
    items: Aggregates = {}
    shown: dict[str, Item] = {}
    out: list[tuple[Features, bool]] = []
    for record in records:
        event = parse_event(record.value)
        if isinstance(event, Rejection) or event.type == "labeled":
            continue
        at = event.ts.timestamp()
        user = users.setdefault(event.user_id, {})
        item_aggs = items.setdefault(event.item_id, {})
        if isinstance(event, Impression):
            x = features(event.context, event.item, user, item_aggs, at, config, store)
            y = bool(record.will_purchase)
            out.append((x, y))
            served = float(model.predict_proba_one(x).get(True, 0.0))
            model.learn_one(x, y)
            asked = store.main_category(event.context.query.lower())
            observe_impression(
                user, item_aggs, event.item, at, config, event.context, asked, served
            )
            store.observe(event.context.query, event.item.category, float(x["log_price"]), at)
            shown[event.impression_id] = event.item
        else:
            item = shown.get(event.impression_id or "")
            observe_outcome(user, item_aggs, event.type, item, at, config)
    return out, users, items, store


def river_bare(data: list[tuple[Features, bool]], params: dict[str, Any] | None = None) -> Any:
    model = build_model("logreg", params)
    for x, y in data:
        model.learn_one(x, y)
    return model


ANCHORS = {
    # The shipped model given every label at once: what the delayed feedback costs. It is
    # the model the replay serves with.
    "headrace logreg (bayes), labels at once": None,
    # River's own logistic pipeline with the step that did best on this stream (the
    # default before the bayes optimizer): what a River user would run.
    "River logreg (AdaGrad 0.05), labels at once": {"optimizer": "adagrad"},
}


def vw_line(request_user: str, item_id: str, item: Item, ctx: Any, label: bool | None) -> str:
    def clean(text: str) -> str:
        return text.replace(" ", "_").replace("|", "_").replace(":", "_") or "none"

    words = " ".join(clean(w) for w in ctx.query.split()) or "none"
    head = "" if label is None else ("1 " if label else "-1 ")
    return (
        f"{head}|u {clean(request_user)} |i {clean(item_id)} c_{clean(item.category)} "
        f"b_{clean(item.brand or 'none')} |c {words} d_{ctx.device} p_{ctx.page} "
        f"|n position:{ctx.position} log_price:{math.log1p(item.price):.6f}"
    )


def vowpal(records: list[SimRecord], data: HeldOut) -> "Row | None":
    try:
        import vowpalwabbit
    except ImportError:
        return None
    vw = vowpalwabbit.Workspace(
        "--loss_function logistic --link logistic -q uc -q un -q ui --power_t 0.3 -l 0.3 "
        "-b 22 --quiet"
    )
    for record in records:
        event = parse_event(record.value)
        if isinstance(event, Impression):
            vw.learn(
                vw_line(
                    event.user_id,
                    event.item_id,
                    event.item,
                    event.context,
                    bool(record.will_purchase),
                )
            )

    def score(request: ShopRequest) -> np.ndarray:
        return np.array(
            [
                vw.predict(vw_line(request.user_id, c.item_id, c.item, request.context, None))
                for c in request.candidates
            ]
        )

    result = scored_row("Vowpal Wabbit -q uc un ui, labels at once", data, score)
    vw.finish()
    return result


def baseline_rows(records: list[SimRecord], final: HeldOut) -> list[Row]:
    """The ANCHORS (the shipped model and River's own pipeline outside the learner) and
    Vowpal Wabbit (when installed) on `records`' impressions, each learned once with its
    true label, scored on `final`."""
    rows: list[Row] = []
    served = build_model("logreg")
    data, users, items, stats = replay(records, FeatureConfig(), served)
    end = records[-1].ts_ms / 1000
    for name, params in ANCHORS.items():
        model = served if params is None else river_bare(data, params)
        rows.append(scored_row(name, final, _scorer(model, users, items, stats, end)))
        rows[-1].learned = len(data)
    vw = vowpal(records, final)
    if vw is not None:
        rows.append(vw)
        rows[-1].learned = len(data)
    return rows


def _scorer(
    model: Any, users: Aggregates, items: Aggregates, stats: StoreStats, end: float
) -> Callable[[ShopRequest], np.ndarray]:
    def river_score(request: ShopRequest) -> np.ndarray:
        user = users.get(request.user_id, {})
        return np.array(
            [
                float(
                    model.predict_proba_one(
                        features(
                            request.context,
                            c.item,
                            user,
                            items.get(c.item_id, {}),
                            end,
                            FeatureConfig(),
                            stats,
                        )
                    ).get(True, 0.0)
                )
                for c in request.candidates
            ]
        )

    return river_score
