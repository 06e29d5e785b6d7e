"""Where the learner's distance to the ceiling is: the same online model, labels known at
once, with one more feature each time.

    .venv/bin/python bench/taste_gap.py [--seeds 101,202,303,404] [--count 60000]

No Redis: the learner's features are replayed point in time (as bench/quality.py's
`replay` does) and River's logistic pipeline as shipped (`build_model("logreg")`, the
bench's anchor) learns each impression with its true label. Each column adds features
to every example, training and held-out alike, and gives the held-out ratio to the
hidden model's AUC (tests/heldout.py) and its change against the shipped features:

- joint estimate: the shopper's taste for the item's category as one multinomial-logit
  posterior mode over all categories at once (`joint_modes` below), from the
  aggregates the learner keeps;
- oracle MAP: the most likely taste given what the stream showed of the shopper up to
  the impression, with bench/ceiling.py's prior and evidence (the category each visit
  truly asked for, the purchases that had arrived, each impression's hidden logit
  apart from the taste); the ceiling's posterior, as a point estimate;
- hidden match, relative price, price sensitivity, rest: terms of the hidden model
  other than the taste (whether the item's category is the one the visit asked for;
  minus its log price over its category's median; the shopper's own price sensitivity
  minus the typical one, times that; the hidden logit without the taste, all of them);
- oracle MAP + hidden rest, and the two alone (no other feature);
- hidden taste: the simulator's taste itself;
("shipped" is the features without the store-wide table, learner/storestats.py, as they
were before it; the store-wide columns below measure that table, computed here by the
bench's own `StoreStats`, apart from the learner's.)

- + query category share: the share of the impressions shown so far for the visit's
  query that were of the item's category (store-wide, no labels; 0 for a query not seen
  yet or none), the storefront's own idea of what a query asks for;
- + share, without query_category: the same, and the one-hot query x category dropped;
- + relative price: the item's log price minus the mean log price of its category's
  impressions so far (store-wide);
- + share and relative price: the two above; and without query_category: the one-hot
  dropped as well;
- the last column uses no model: sigmoid(oracle MAP + hidden rest), the hidden model
  with the oracle's point estimate of the taste.

Both sides of every column learn the same impressions and score the same candidates.
"""

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ceiling import PRIOR_SD, arrival_cdf, wanted  # noqa: E402
from headrace.sim.simulator import SimulatorConfig, generate, world  # noqa: E402
from headrace.sim.store_world import CATEGORIES, ShopRequest, Store  # noqa: E402
from learner.features import (  # noqa: E402
    FeatureConfig,
    features,
    observe_impression,
    observe_outcome,
)
from learner.models import build_model  # noqa: E402
from stream.events import Impression, Item, Purchase, Rejection, parse_event  # noqa: E402
from tests.heldout import Quality, held_out, quality  # noqa: E402

Floats = npt.NDArray[np.float64]
K = len(CATEGORIES)
_PRECISION = 1.0 / PRIOR_SD**2
_BUY_TYPICAL_LOGIT = math.log(0.05 / 0.95)
_PAGE = 10.0


def joint_modes(
    asked: dict[str, float],
    visits: float,
    bought: dict[str, float],
    shown: dict[str, float],
    categories: float = 8.0,
    steps: int = 6,
) -> tuple[dict[str, float], float]:
    """The most likely taste shift of every category at once, and of a category with no
    evidence: what was asked for (a multinomial over the categories, softmax of the
    tastes) and what was bought (a logistic purchase of each impression at a typical
    5 %), under one prior N(0, PRIOR_SD^2) each.

    The categories without evidence share one shift, counted `categories` minus the
    known ones times in the softmax. The Hessian is a diagonal minus the softmax's
    rank-one term, so each Newton step is solved in closed form (Sherman-Morrison)."""
    names = list(dict.fromkeys([*asked, *shown]))
    k = len(names)
    a = [asked.get(c, 0.0) for c in names] + [0.0]
    b = [bought.get(c, 0.0) for c in names] + [0.0]
    s = [shown.get(c, 0.0) for c in names] + [0.0]
    w = [1.0] * k + [max(categories - k, 0.0)]
    t = [0.0] * (k + 1)
    for _ in range(steps):
        e = [math.exp(v) for v in t]
        z = sum(wi * ei for wi, ei in zip(w, e, strict=True))
        s1 = s2 = 0.0
        g, d, pi = [], [], []
        for i in range(k + 1):
            p_i = e[i] / z
            q = 1.0 / (1.0 + math.exp(-(t[i] + _BUY_TYPICAL_LOGIT)))
            gi = a[i] - visits * p_i + b[i] - s[i] * q - t[i] * _PRECISION
            di = _PRECISION + visits * p_i + s[i] * q * (1.0 - q)
            s1 += w[i] * p_i * gi / di
            s2 += w[i] * p_i * p_i / di
            g.append(gi)
            d.append(di)
            pi.append(p_i)
        c = visits * s1 / (1.0 - visits * s2)
        t = [t[i] + (g[i] + pi[i] * c) / d[i] for i in range(k + 1)]
    return dict(zip(names, t[:k], strict=True)), t[k]


def joint_of(user: dict[str, float], category: str) -> float:
    """`joint_modes` from the learner's aggregates of a shopper (learner/features.py)."""
    asked = {k[3:]: v / _PAGE for k, v in user.items() if k.startswith("qi:")}
    shown = {k[3:]: v for k, v in user.items() if k.startswith("im:")}
    bought = {k[3:]: v for k, v in user.items() if k.startswith("pu:")}
    modes, rest = joint_modes(asked, user.get("qi", 0.0) / _PAGE, bought, shown)
    return modes.get(category, rest)


class Oracle:
    """Each shopper's evidence as bench/ceiling.py reads it, and its MAP at a moment."""

    def __init__(self, pop: Floats) -> None:
        self.pop = pop
        self.wants: dict[int, Floats] = defaultdict(lambda: np.zeros(K))
        self.shown: dict[int, list[tuple[int, int, float, str]]] = defaultdict(list)
        """(category, time ms, hidden logit without the taste, impression id)"""
        self.bought: set[str] = set()
        self.delays = arrival_cdf(np.random.default_rng(0))
        self.cache: dict[tuple[int, int, int], Floats] = {}

    def mode(self, user: int, now_ms: int, want: int) -> Floats:
        """The MAP of the shopper's tastes given the evidence before `now_ms` and the
        category asked for now (a page's impressions share one)."""
        key = (user, now_ms // 5_000, want)
        found = self.cache.get(key)
        if found is not None:
            return found
        wants = self.wants[user].copy()
        if want >= 0:
            wants[want] += 1
        past = [i for i in self.shown[user] if i[1] < now_ms]
        cats = np.array([i[0] for i in past], dtype=np.int64)
        rest = np.array([i[2] for i in past])
        bought = np.array([i[3] in self.bought for i in past], dtype=bool)
        ages = np.array([now_ms - i[1] for i in past], dtype=np.float64)
        arrives = np.searchsorted(self.delays, ages, side="right") / len(self.delays)
        n = wants.sum()
        t = self.pop.copy()
        for _ in range(12):
            e = np.exp(t - t.max())
            pi = e / e.sum()
            g = wants - n * pi - _PRECISION * (t - self.pop)
            h = _PRECISION * np.eye(K) + n * (np.diag(pi) - np.outer(pi, pi))
            if len(past):
                p = 1.0 / (1.0 + np.exp(-(t[cats] + rest)))
                # Bought (and arrived): log p. Not seen bought: log(1 - arrives * p).
                slope = np.where(bought, 1.0 - p, -arrives * p * (1 - p) / (1 - arrives * p))
                curve = np.where(bought, p * (1 - p), arrives * p * (1 - p))
                g += np.bincount(cats, slope, K)
                h += np.diag(np.bincount(cats, curve, K))
            t = t + np.linalg.solve(h, g)
        self.cache[key] = t
        return t


STORE_COLUMNS = (
    "+ query category share",
    "+ share, without query_category",
    "+ relative price",
    "+ share and relative price",
    "+ share and relative price, without query_category",
)
COLUMNS = (
    "joint estimate",
    "oracle MAP",
    "hidden match",
    "hidden relative price",
    "hidden price sensitivity",
    "hidden rest",
    "oracle MAP + hidden rest",
    "only those two",
    "hidden taste",
    *STORE_COLUMNS,
)


class StoreStats:
    """Store-wide counts of the impressions before the current one: per query, of each
    category; per category, of the log prices. Decayed at every event as the learner's
    aggregates (learner/storestats.py weighs each new impression instead: the same
    ratios)."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.queries: dict[str, dict[str, float]] = defaultdict(dict)
        self.prices: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.at: float | None = None

    def observe(self, query: str, category: str, log_price: float, at: float) -> None:
        if self.at is not None and at > self.at:
            factor = 0.5 ** ((at - self.at) / self.half_life_s)
            for counts in self.queries.values():
                for key in counts:
                    counts[key] *= factor
            for sums in self.prices.values():
                sums[0] *= factor
                sums[1] *= factor
        self.at = at if self.at is None else max(self.at, at)
        if query:
            counts = self.queries[query]
            counts[category] = counts.get(category, 0.0) + 1.0
            counts[""] = counts.get("", 0.0) + 1.0
        sums = self.prices[category]
        sums[0] += log_price
        sums[1] += 1.0

    def share(self, query: str, category: str) -> float:
        counts = self.queries.get(query)
        if not query or not counts:
            return 0.0
        return counts.get(category, 0.0) / counts[""]

    def relative_price(self, category: str, log_price: float) -> float:
        sums = self.prices.get(category)
        if sums is None or sums[1] <= 0:
            return 0.0
        return log_price - sums[0] / sums[1]

    def extras(self, x: dict[str, Any], query: str, category: str) -> dict[str, dict[str, float]]:
        share = {"query_cat_share": self.share(query, category)}
        rel = {"rel_price": self.relative_price(category, float(x["log_price"]))}
        return {
            "+ query category share": share,
            "+ share, without query_category": share,
            "+ relative price": rel,
            "+ share and relative price": share | rel,
            "+ share and relative price, without query_category": share | rel,
        }


_DROPS_QUERY_CATEGORY = frozenset(c for c in STORE_COLUMNS if "without query_category" in c)


class Hidden:
    """The hidden model's terms of one shown item."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.taste = store._taste[0]
        self.sens = store._sens[0]
        self.rel = store._rel_price[0]
        self.users = {name: i for i, name in enumerate(store.user_ids)}
        self.items = {name: i for i, name in enumerate(store.item_ids)}

    def extras(
        self, user: int, item: int, p: float, want: int, joint: float, omap: Floats
    ) -> dict[str, dict[str, float]]:
        cat = int(self.store.item_cat[item])
        rest = math.log(p / (1 - p)) - float(self.taste[user, cat])
        both = {"x_taste": float(omap[cat]), "x_rest": rest}
        return {
            "shipped": {},
            "joint estimate": {"x_joint": joint},
            "oracle MAP": {"x_taste": float(omap[cat])},
            "hidden match": {"x_match": 1.0 if cat == want else 0.0},
            "hidden relative price": {"x_rel": float(-self.rel[item])},
            "hidden price sensitivity": {"x_sens": float(-(self.sens[user] - 1) * self.rel[item])},
            "hidden rest": {"x_rest": rest},
            "oracle MAP + hidden rest": both,
            "only those two": both,
            "hidden taste": {"x_taste": float(self.taste[user, cat])},
            "true coefficients": {"logit": float(omap[cat]) + rest},
        }


def run(seed: int, count: int, columns: tuple[str, ...] = COLUMNS) -> list[Quality]:
    """The held-out quality of each column, in ("shipped", *columns, no model) order."""
    config = SimulatorConfig(seed=seed, count=count)
    records = list(generate(config))
    hidden = Hidden(world(config))
    oracle = Oracle(hidden.taste.mean(axis=0))
    fc = FeatureConfig()
    users: dict[str, dict[str, float]] = {}
    items: dict[str, dict[str, float]] = {}
    shown: dict[str, Item] = {}
    names = ("shipped", *columns)
    models = {name: build_model("logreg") for name in names}
    stats = StoreStats(fc.half_life_s)
    # The oracle's posterior is most of the run's time: only when a column needs it.
    needs_oracle = bool(set(columns) - set(STORE_COLUMNS))
    none = np.zeros(K)

    def row(name: str, x: dict[str, Any], extra: dict[str, float]) -> dict[str, Any]:
        if name == "only those two":
            return extra
        if name in _DROPS_QUERY_CATEGORY:
            x = {k: v for k, v in x.items() if k != "query_category"}
        return x | extra

    for record in records:
        event = parse_event(record.value)
        if isinstance(event, Rejection) or event.type == "labeled":
            continue
        at = event.ts.timestamp()
        u = users.setdefault(event.user_id, {})
        i = items.setdefault(event.item_id, {})
        if isinstance(event, Impression):
            user, item = hidden.users[event.user_id], hidden.items[event.item_id]
            ctx = event.context
            x = features(ctx, event.item, u, i, at, fc)
            want = wanted(ctx.page, ctx.query)
            omap = (
                oracle.mode(user, record.ts_ms - 20 * ctx.position, want) if needs_oracle else none
            )
            p = float(record.p_purchase or 0.0)
            joint = joint_of(u, event.item.category) if needs_oracle else 0.0
            extras = hidden.extras(user, item, p, want, joint, omap)
            extras |= stats.extras(x, ctx.query.lower(), event.item.category)
            for name in names:
                models[name].learn_one(row(name, x, extras[name]), bool(record.will_purchase))
            observe_impression(u, i, event.item, at, fc, ctx)
            stats.observe(ctx.query.lower(), event.item.category, float(x["log_price"]), at)
            shown[event.impression_id] = event.item
            rest = extras["hidden rest"]["x_rest"]
            cat = int(hidden.store.item_cat[item])
            oracle.shown[user].append((cat, record.ts_ms, rest, event.impression_id))
            if ctx.position == 0 and want >= 0:
                oracle.wants[user][want] += 1
        else:
            if isinstance(event, Purchase) and event.impression_id is not None:
                oracle.bought.add(event.impression_id)
            item_shown = shown.get(event.impression_id or "")
            observe_outcome(u, i, event.type, item_shown, at, fc)
    data = held_out(config, 1_000)
    end_ms = records[-1].ts_ms

    def scorer(name: str) -> Callable[[ShopRequest], Floats]:
        def score(request: ShopRequest) -> Floats:
            user = hidden.users[request.user_id]
            u = users.get(request.user_id, {})
            want = wanted(request.context.page, request.context.query)
            omap = oracle.mode(user, end_ms + 1, want) if needs_oracle else none
            out = []
            for c in request.candidates:
                item = hidden.items[c.item_id]
                joint = joint_of(u, c.item.category) if needs_oracle else 0.0
                extras = hidden.extras(user, item, c.p_purchase, want, joint, omap)
                if name == "true coefficients":
                    out.append(1.0 / (1.0 + math.exp(-extras[name]["logit"])))
                    continue
                x = features(
                    request.context, c.item, u, items.get(c.item_id, {}), end_ms / 1000, fc
                )
                query = request.context.query.lower()
                extras |= stats.extras(x, query, c.item.category)
                proba = models[name].predict_proba_one(row(name, x, extras[name]))
                out.append(float(proba.get(True, 0.0)))
            return np.array(out)

        return score

    return [quality(data, scorer(name)) for name in (*names, "true coefficients")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="101,202,303,404")
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument(
        "--store-only",
        action="store_true",
        help="only the store-wide columns (" + ", ".join(STORE_COLUMNS) + "): no oracle",
    )
    args = parser.parse_args()
    columns = STORE_COLUMNS if args.store_only else COLUMNS
    heads: tuple[str, ...] = ("shipped", *columns)
    if not args.store_only:
        heads += ("sigmoid(oracle MAP + hidden rest), no model",)
    print("| seed (hidden AUC) | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for seed in (int(s) for s in args.seeds.split(",")):
        found = run(seed, args.count, columns)
        base = found[0].ratio
        cells = [f"{found[0].ratio:.4f}"] + [
            f"{q.ratio:.4f} ({q.ratio - base:+.4f})" for q in found[1 : len(heads)]
        ]
        print(f"| {seed} ({found[0].hidden_auc:.3f}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
