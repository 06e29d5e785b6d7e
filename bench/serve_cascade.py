"""Held-out ranking quality of the cascade, against the cheap and the expensive variant alone.

    .venv/bin/python bench/serve_cascade.py [--seeds 1,2,3] [--count 60000] [--k 100]
        [--then fm,tree] [--tops 5,10,20,50] [--uncertain 10:10,10:20]
        [--cost-k 100,1000] [--cache DIR]

Needs a Redis (the local stack: `headrace stack up`, or HEADRACE_REDIS_URL) for the
learner's aggregates, under a key prefix of its own that is deleted afterwards.

For each seed the simulator's stream goes through the learner's own core (bench/quality.py's
`learner_run`: the code `headrace learn` runs, every variant learning every example), then
`--requests` storefront requests it never saw, of `--k` candidates each, are ranked by:
the cheap variant alone (`logreg`), each expensive variant alone (`--then`), and the
cascade of the two for each `--tops` M (api/cascade.py's own `cheap_order` and `merge`: the
cheap ranking's best M re-scored and put first) and for each `--uncertain` CUT:K (the K
candidates of the cheap ranking nearest its CUT re-scored and re-ordered in place). A kind
may be a model function (`module:function`, e.g. bench/cascade_models.py's). Against the
simulator's hidden purchase probabilities it prints, averaged over the requests: the
expected ROC AUC within a request (how well the ranking orders that request's candidates;
tests/heldout.py's exact expectation) and NDCG@10 with the hidden probability as the
gain. `gain kept` is the share of the expensive variant's gain over the cheap one that
the cascade keeps (`worse` when the expensive one alone ranks below the cheap one: there
is no gain to keep);
`scored` is the candidates the expensive variant scores, as a share of scoring them all.
The CPU part prints, for requests of each `--cost-k` candidates, each cascade's thread
time over the cheap path's (features and the cheap scoring) in the same run: an upper
bound of the whole API's ratio, which also parses, fetches and encodes (bench/serve.py
--cascade measures that). An expensive kind with a numpy scorer (`fm`: learner/fmscorer.py)
is timed with it, as the API serves it, and again with River's predict_proba_one row by
row (`fm river`), after checking both give the same scores.

Learning a long stream is most of the run: `--cache DIR` keeps what it leaves and reads
it back next time (bench/cascade_trained.py).

Both sides rank the same requests with the same aggregates at the same time: the check
line says so.
"""

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.cascade import cheap_order, merge, run  # noqa: E402
from api.cascadespec import CascadeSpec  # noqa: E402
from api.loading import LoadedVariant, scorer_for  # noqa: E402
from api.scoring import NUMPY_LINEAR, score_columns, score_rows, scorer_name  # noqa: E402
from bench.cascade_trained import Trained, trained_models  # noqa: E402
from headrace.sim.simulator import SimulatorConfig  # noqa: E402
from headrace.sim.store_world import ShopRequest  # noqa: E402
from learner.columns import rows_of  # noqa: E402
from learner.features import ItemColumns, features_many  # noqa: E402
from learner.redisconn import connect  # noqa: E402
from stream.settings import StreamSettings  # noqa: E402
from tests.heldout import expected_auc, held_out  # noqa: E402

CHEAP = "logreg"


def ndcg_at(order: list[int], p: np.ndarray, k: int = 10) -> float:
    """NDCG@k of a ranking (candidate indices, best first) with gains `p`."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    got = p[np.asarray(order[:k])]
    ideal = np.sort(p)[::-1][:k]
    return float((got * discounts[: len(got)]).sum() / (ideal * discounts[: len(ideal)]).sum())


def by_score(scores: np.ndarray) -> list[int]:
    order: list[int] = np.argsort(-scores, kind="stable").tolist()
    return order


def ranked_auc(order: list[int], p: np.ndarray) -> float:
    """Expected ROC AUC of a ranking: the rank is the score."""
    score = np.empty(len(order), dtype=np.float64)
    score[np.asarray(order)] = np.arange(len(order), 0, -1, dtype=np.float64)
    return expected_auc(p, score)


@dataclass
class Tally:
    auc: list[float]
    ndcg: list[float]

    def add(self, order: list[int], p: np.ndarray) -> None:
        self.auc.append(ranked_auc(order, p))
        self.ndcg.append(ndcg_at(order, p))

    @property
    def means(self) -> tuple[float, float]:
        return float(np.mean(self.auc)), float(np.mean(self.ndcg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--n-users", type=int, default=2_000)
    parser.add_argument("--n-items", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--k", type=int, default=100, help="candidates per request")
    parser.add_argument("--then", default="fm,tree", help="expensive kinds")
    parser.add_argument("--tops", default="5,10,20,50")
    parser.add_argument(
        "--uncertain", default="", help="CUT:K,...: re-score the K candidates nearest CUT"
    )
    parser.add_argument(
        "--cost-k", default="1000", help="candidates per request for the CPU part, e.g. 100,1000"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the learned models in DIR and read them back on the next run with the "
        "same seed, --count, --n-users, --n-items and kinds (bench/cascade_trained.py)",
    )
    args = parser.parse_args()
    expensive = args.then.split(",")
    rules = [
        (f"top {m}", CascadeSpec(first=CHEAP, then="x", top=int(m)))
        for m in args.tops.split(",")
        if m
    ]
    for pair in (p for p in args.uncertain.split(",") if p):
        cut, k = (int(v) for v in pair.split(":"))
        spec = CascadeSpec(first=CHEAP, then="x", top=cut, uncertain=k)
        rules.append((f"{k} near {cut}", spec))
    names = [CHEAP, *expensive, *(f"{e} {r}" for e in expensive for r, _ in rules)]
    tallies: dict[str, Tally] = {name: Tally([], []) for name in names}
    cost_ks = [int(k) for k in args.cost_k.split(",") if k]
    costs: dict[int, list[dict[str, float]]] = {k: [] for k in cost_ks}
    client = connect(StreamSettings())
    for seed in (int(s) for s in args.seeds.split(",")):
        config = SimulatorConfig(
            seed=seed, count=args.count, n_users=args.n_users, n_items=args.n_items
        )
        data = held_out(config, args.requests, k=args.k)
        trained = trained_models(client, config, [CHEAP, *expensive], data.requests, args.cache)
        scorers = {kind: trained.scorer(kind) for kind in [CHEAP, *expensive]}
        ranked = 0
        # A store of fewer items than --k gives fewer candidates: say how many were ranked.
        distinct = [len({c.item_id for c in r.candidates}) for r in data.requests]
        for request in data.requests:
            # A request has up to --k candidates (a store of fewer items gives fewer).
            p = np.array([c.p_purchase for c in request.candidates], dtype=np.float64)
            cheap = scorers[CHEAP](request)
            tallies[CHEAP].add(by_score(cheap), p)
            order = cheap_order(cheap)
            for kind in expensive:
                rich = scorers[kind](request)
                tallies[kind].add(by_score(rich), p)
                for rule, spec in rules:
                    start, stop = spec.span(len(cheap))
                    # The same model on the same features: scoring only the span gives these.
                    merged = merge(cheap, order, start, rich[order[start:stop]])
                    tallies[f"{kind} {rule}"].add(merged.order, p)
            ranked += 1
        for k in cost_ks:
            costs[k].append(cost(trained, data.requests[:50], expensive, rules, k))
        print(
            f"seed {seed}: {args.count:,} records learned by {CHEAP} and "
            f"{', '.join(expensive)} ({trained.source}); {ranked} held-out requests of "
            f"{min(distinct):,} to {max(distinct):,} distinct candidates (of --k {args.k:,}) "
            f"among {args.n_items:,} items ranked by every row below (check: the same "
            "requests, aggregates and time)",
            flush=True,
        )
    report(tallies, expensive, rules, args)
    for k, found in costs.items():
        report_cost(k, found)


def report_cost(k: int, costs: list[dict[str, float]]) -> None:
    print(
        f"\nCPU per request of {k:,} candidates in this process (thread time, means over "
        "the seeds): the features and the cheap scoring, what each adds, and the whole over "
        "the cheap path's (features + cheap scoring)"
    )
    means = {name: float(np.mean([c[name] for c in costs])) for name in costs[0]}
    base = means["features"] + means[f"{CHEAP} ({NUMPY_LINEAR})"]
    for name, value in means.items():
        extra = value if name.startswith("+") or " alone (" in name else None
        ratio = f"{(base + extra) / base:>6.2f}x" if extra is not None else ""
        print(f"{short(name):>28} {value:>9,.0f} us {ratio}")


def cost(
    trained: Trained,
    requests: list[ShopRequest],
    expensive: list[str],
    rules: list[tuple[str, CascadeSpec]],
    k: int,
) -> dict[str, float]:
    """Thread CPU microseconds a request of `k` candidates spends on each stage, as the API
    runs them (features_many, score_columns, api.cascade.run) on the learner's models.

    A kind with a numpy scorer is timed twice: with it (as the API serves it) and with
    River's predict_proba_one row by row (`river`), after checking both give the same
    scores."""
    keys, config, at = trained.keys, trained.feature_config, trained.at
    loaded = {
        kind: LoadedVariant(kind, kind, model, scorer_for(model), kind)
        for kind, model in trained.models.items()
    }
    ways = [(kind, loaded[kind]) for kind in expensive]
    ways += [
        (f"{kind} river", LoadedVariant(kind, kind, loaded[kind].model, None, kind))
        for kind in expensive
        if loaded[kind].scorer is not None
    ]
    spent: dict[str, list[float]] = {}

    def timed(name: str, started: float) -> float:
        now = time.thread_time()
        spent.setdefault(name, []).append((now - started) * 1e6)
        return now

    for request in requests:
        items = (list(request.candidates) * (k // len(request.candidates) + 1))[:k]
        user = trained.aggregate(keys.user(request.user_id))
        aggs = ItemColumns.of([trained.aggregate(keys.item(c.item_id)) for c in items])
        started = time.thread_time()
        columns = features_many(
            request.context, [c.item for c in items], user, aggs, at, config, trained.store
        )
        started = timed("features", started)
        cheap = score_columns(loaded[CHEAP], columns, k)
        started = timed(f"{CHEAP} ({scorer_name(loaded[CHEAP])})", started)
        for name, variant in ways:
            for rule, spec in rules:
                run(variant, spec, columns, cheap)
                started = timed(f"+ {name} {rule}", started)
            score_columns(variant, columns, k)
            started = timed(f"{name} alone ({scorer_name(variant)})", started)
    for kind in expensive:
        # The same work both ways: the numpy scorer's scores are River's.
        request = requests[0]
        items = list(request.candidates)
        user = trained.aggregate(keys.user(request.user_id))
        aggs = ItemColumns.of([trained.aggregate(keys.item(c.item_id)) for c in items])
        columns = features_many(
            request.context, [c.item for c in items], user, aggs, at, config, trained.store
        )
        fast = score_columns(loaded[kind], columns, len(items))
        by_river = LoadedVariant(kind, kind, loaded[kind].model, None, kind)
        river = score_rows(by_river, rows_of(columns, len(items)))
        gap = float(np.abs(fast - river).max())
        assert gap < 1e-9, f"{kind}: the numpy scorer is {gap} off River's scores"
    return {name: float(np.mean(values)) for name, values in spent.items()}


def report(
    tallies: dict[str, Tally],
    expensive: list[str],
    rules: list[tuple[str, CascadeSpec]],
    args: argparse.Namespace,
) -> None:
    n = len(tallies[CHEAP].auc)
    print(
        f"\n{n} requests of {args.k} candidates (seeds {args.seeds}, {args.count:,} records "
        "each); means over the requests"
    )
    print(f"{'ranking':>28} {'AUC':>7} {'NDCG@10':>8} {'gain kept':>18} {'scored':>7}")
    base_auc, base_ndcg = tallies[CHEAP].means
    print(f"{CHEAP:>28} {base_auc:>7.4f} {base_ndcg:>8.4f} {'':>18} {'0%':>7}")
    for kind in expensive:
        auc, ndcg = tallies[kind].means
        print(f"{short(kind):>28} {auc:>7.4f} {ndcg:>8.4f} {'':>18} {'100%':>7}")
        for rule, spec in rules:
            c_auc, c_ndcg = tallies[f"{kind} {rule}"].means
            kept = f"{share(c_auc, base_auc, auc)} / {share(c_ndcg, base_ndcg, ndcg)}"
            start, stop = spec.span(args.k)
            scored = f"{(stop - start) / args.k:.0%}"
            label = short(f"{kind} {rule}")
            print(f"{label:>28} {c_auc:>7.4f} {c_ndcg:>8.4f} {kept:>18} {scored:>7}")
    print(
        "gain kept: (cascade - cheap) / (expensive - cheap), for AUC / NDCG@10; `worse`: "
        "the expensive variant alone ranks below the cheap one, so there is no gain to keep"
    )


def short(name: str) -> str:
    """A model function's name without its module, to fit the table."""
    return name.rsplit(":", 1)[-1] if ":" in name else name


def share(got: float, cheap: float, rich: float) -> str:
    gain = rich - cheap
    if gain < 1e-4:
        # No gain to keep: the expensive variant ranks no better than the cheap one.
        return "none" if gain > -1e-4 else "worse"
    value = (got - cheap) / gain
    return f"{value:.0%}" if math.isfinite(value) else "n/a"


if __name__ == "__main__":
    main()
