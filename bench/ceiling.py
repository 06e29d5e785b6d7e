"""The ceiling of learning quality: the best held-out ranking any learner could reach from
what the stream shows.

    .venv/bin/python bench/ceiling.py [--seeds 101,202] [--count 60000] [--learner]

The simulator's purchase model is logistic in a shopper's taste for the item's category
plus terms every learner can observe or estimate (price and the shopper's price
sensitivity, position, whether the item matches the query, device). The ceiling is a
Bayes oracle on `bench/quality.py`'s held-out requests: it knows every hidden coefficient
except each shopper's taste, and replaces the taste by its posterior given everything the
stream showed of that shopper before the request:

- each visit's query or category page names the category they went looking for, which
  the simulator draws from softmax(taste) (a home page names none);
- each impression either ended in a purchase event that reached the stream, or not: the
  likelihood is p when it did, 1 - p * P(the purchase would have arrived by the end of
  the stream) when it did not (the outcome delays are the simulator's);
- clicks and add-to-carts without a purchase carry nothing on the taste: the simulator
  draws them, given no purchase, with a chance that depends on the position only;
- the request's own query, like any visit's.

The prior is the simulator's: each taste N(pop, 0.8^2), pop estimated as the mean of every
shopper's hidden taste. The posterior is sampled by importance sampling (a Gaussian around
its mode with the Laplace approximation's spread, then up to six passes of a Gaussian
fitted to the pass before, each mixed with the prior, until the effective sample size is a
quarter of the samples), and the oracle predicts E[sigmoid(logit)] under it; the table
gives the smallest and the median effective sample size over the held-out shoppers. Its
expected AUC over the hidden model's own on the same requests is the ceiling ratio. For
reference it also prints the oracle that knows the prior only, the ones that use the
queries only or the purchases only, and (with --learner, which needs a Redis as
bench/quality.py does) the shipped learner's ratio on the same requests, from the same
stream. The column "typical price sensitivity" is the same oracle with the shoppers' mean
price sensitivity in place of each one's own: a learner estimates a shopper's sensitivity
from their few purchases, if at all, so the ceiling of a learner lies between the two.
"""

import argparse
import functools
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headrace.sim.simulator import SimRecord, SimulatorConfig, generate, world  # noqa: E402
from headrace.sim.store_world import _QUERIES, CATEGORIES, Store  # noqa: E402
from stream.events import Impression, Purchase, Rejection, parse_event  # noqa: E402
from tests.heldout import HeldOut, Quality, held_out, quality  # noqa: E402

Floats = npt.NDArray[np.float64]

PRIOR_SD = 0.8
"""The spread of a shopper's taste around the category's popularity (store_world.py)."""

# The simulator's outcome delays (simulator.py): click, then cart, then purchase, each a
# floor plus an exponential tail, in ms.
_DELAYS_MS = ((1_500, 12_000), (4_000, 40_000), (10_000, 120_000))

_WANT = {CATEGORIES[c]: c for c in range(len(CATEGORIES))} | {
    query: c for c, queries in enumerate(_QUERIES) for query in queries
}


def wanted(page: str, query: str) -> int:
    """The category a visit went looking for, or -1 (a home page names none)."""
    return _WANT[query] if page in ("search", "category") else -1


def arrival_cdf(rng: np.random.Generator, n: int = 400_000) -> Floats:
    """Sorted draws of a purchase's delay after its impression (ms): an empirical CDF."""
    total = np.zeros(n)
    for floor, scale in _DELAYS_MS:
        total += floor + np.floor(rng.exponential(1.0, n) * scale)
    return np.sort(total)


@dataclass
class Shopper:
    """What the stream showed of one shopper."""

    cats: list[int] = field(default_factory=list)
    rest: list[float] = field(default_factory=list)
    """Each impression's hidden logit without the taste term."""
    bought: list[bool] = field(default_factory=list)
    arrives: list[float] = field(default_factory=list)
    """Chance that a purchase of the impression would have reached the stream by its end."""
    wants: Floats = field(default_factory=lambda: np.zeros(len(CATEGORIES)))
    prices: list[float] = field(default_factory=list)
    """Each impression's item price relative to its category (the hidden model's)."""


def observe(records: list[SimRecord], store: Store, taste: Floats) -> dict[int, Shopper]:
    """Every shopper's evidence on their taste, from the stream's records."""
    users = {name: i for i, name in enumerate(store.user_ids)}
    items = {name: i for i, name in enumerate(store.item_ids)}
    purchased = set()
    impressions: list[tuple[int, int, float, float, int, str]] = []
    shoppers: dict[int, Shopper] = defaultdict(Shopper)
    for record in records:
        event = parse_event(record.value)
        if isinstance(event, Rejection):
            continue
        if isinstance(event, Purchase) and event.impression_id is not None:
            purchased.add(event.impression_id)
        elif isinstance(event, Impression):
            user = users[event.user_id]
            cat = int(store.item_cat[items[event.item_id]])
            p = float(record.p_purchase or 0.0)
            rest = float(np.log(p / (1 - p))) - float(taste[user, cat])
            price = float(store._rel_price[0][items[event.item_id]])
            impressions.append((user, cat, rest, price, record.ts_ms, event.impression_id))
            if event.context.position == 0:
                want = wanted(event.context.page, event.context.query)
                if want >= 0:
                    shoppers[user].wants[want] += 1
    delays = arrival_cdf(np.random.default_rng(0))
    end = records[-1].ts_ms
    for user, cat, rest, price, ts, impression_id in impressions:
        shopper = shoppers[user]
        shopper.cats.append(cat)
        shopper.rest.append(rest)
        shopper.prices.append(price)
        shopper.bought.append(impression_id in purchased)
        shopper.arrives.append(float(np.searchsorted(delays, end - ts, side="right")) / len(delays))
    return shoppers


def with_gap(shoppers: dict[int, Shopper], gap: Floats) -> dict[int, Shopper]:
    """The same evidence as an oracle whose price sensitivity is each shopper's hidden one
    less `gap` (`sensitivity_gap`) sees it: each impression's logit plus the gap times its
    price."""
    return {
        user: replace(
            shopper,
            rest=[
                r + float(gap[user]) * q for r, q in zip(shopper.rest, shopper.prices, strict=True)
            ],
        )
        for user, shopper in shoppers.items()
    }


def sensitivity_gap(store: Store, typical: bool) -> Floats:
    """Each shopper's hidden price sensitivity less the one the oracle uses: its own (0),
    or with `typical` the shoppers' mean. The hidden logit has -sensitivity · the item's
    price relative to its category, so the oracle's logit is the hidden one plus the gap
    times that price."""
    sens = store._sens[0]
    gap: Floats = sens - sens.mean() if typical else np.zeros_like(sens)
    return gap


def _log_sigmoid(x: Floats) -> Floats:
    return -np.logaddexp(0.0, -x)


def log_likelihood(
    samples: Floats, shopper: Shopper, *, queries: bool = True, purchases: bool = True
) -> Floats:
    """log P(what the stream showed | taste) for each sampled taste (a row of `samples`)."""
    out = np.zeros(len(samples))
    if queries and shopper.wants.any():
        lse = np.logaddexp.reduce(samples, axis=1)
        out += samples @ shopper.wants - shopper.wants.sum() * lse
    if purchases and shopper.cats:
        logits = samples[:, shopper.cats] + np.asarray(shopper.rest)
        bought = np.asarray(shopper.bought)
        arrives = np.asarray(shopper.arrives)
        p = np.exp(_log_sigmoid(logits))
        ll = np.where(bought, _log_sigmoid(logits), np.log1p(-arrives * p))
        out += ll.sum(axis=1)
    return out


def _log_normal(x: Floats, mean: Floats, chol: Floats) -> Floats:
    """log density of N(mean, chol chol^T) at each row of x."""
    z = np.linalg.solve(chol, (x - mean).T)
    log_det = float(np.log(np.diag(chol)).sum())
    return np.asarray(-0.5 * (z * z).sum(axis=0) - log_det - 0.5 * x.shape[1] * np.log(2 * np.pi))


_PASSES = 6
_PRIOR_SHARE = 0.1


@dataclass(frozen=True)
class Posterior:
    samples: Floats
    log_w: Floats
    """Unnormalised log importance weights."""

    def ess(self) -> float:
        w = np.exp(self.log_w - self.log_w.max())
        return float(w.sum() ** 2 / (w * w).sum())


def _log_posterior(t: Floats, shopper: Shopper, pop: Floats, **evidence: bool) -> float:
    prior = -0.5 * float(((t - pop) ** 2).sum()) / PRIOR_SD**2
    return prior + float(log_likelihood(t[None, :], shopper, **evidence)[0])


def laplace(
    shopper: Shopper, pop: Floats, *, queries: bool = True, purchases: bool = True
) -> tuple[Floats, Floats]:
    """The posterior's mode and the inverse of minus its Hessian there (Newton's method):
    the Gaussian a shopper of many visits' posterior is close to."""
    k = len(pop)
    wants = shopper.wants if queries else np.zeros(k)
    total = float(wants.sum())
    use = purchases and bool(shopper.cats)
    cats = np.asarray(shopper.cats, dtype=np.int64)
    rest = np.asarray(shopper.rest)
    bought = np.asarray(shopper.bought)
    arrives = np.asarray(shopper.arrives)
    evidence = {"queries": queries, "purchases": purchases}

    def derivatives(t: Floats) -> tuple[Floats, Floats]:
        grad = -(t - pop) / PRIOR_SD**2 + wants
        hess = -np.eye(k) / PRIOR_SD**2
        if total:
            share = np.exp(t - np.logaddexp.reduce(t))
            grad -= total * share
            hess -= total * (np.diag(share) - np.outer(share, share))
        if use:
            p = np.exp(_log_sigmoid(t[cats] + rest))
            slope = p * (1.0 - p)
            left = 1.0 - arrives * p
            # log p for a purchase that arrived; log(1 - a·p) for an impression without one.
            d = np.where(bought, 1.0 - p, -arrives * slope / left)
            h = np.where(
                bought,
                -slope,
                -arrives * (slope * (1.0 - 2.0 * p) * left + arrives * slope**2) / left**2,
            )
            grad += np.bincount(cats, weights=d, minlength=k)
            hess += np.diag(np.bincount(cats, weights=h, minlength=k))
        return grad, hess

    t = pop.astype(float).copy()
    value = _log_posterior(t, shopper, pop, **evidence)
    for _ in range(50):
        grad, hess = derivatives(t)
        step = np.linalg.solve(hess, -grad)
        # Halved until the log-posterior rises: far from the mode a full step can overshoot.
        for _ in range(30):
            moved = t + step
            found = _log_posterior(moved, shopper, pop, **evidence)
            if found >= value:
                break
            step = step / 2
        else:
            break
        t, value = moved, found
        if float(np.abs(step).max()) < 1e-9:
            break
    _, hess = derivatives(t)
    return t, np.asarray(np.linalg.inv(-hess), dtype=np.float64)


def posterior(
    shopper: Shopper | None,
    pop: Floats,
    rng: np.random.Generator,
    n: int,
    **evidence: bool,
) -> Posterior:
    """Importance samples of the shopper's taste given their evidence."""
    k = len(pop)
    if shopper is None:
        return Posterior(pop + rng.normal(0.0, PRIOR_SD, (n, k)), np.zeros(n))
    log_prior_of = functools.partial(_log_normal, mean=pop, chol=np.eye(k) * PRIOR_SD)

    def drawn(mean: Floats, cov: Floats, wider: float) -> Posterior:
        # A Gaussian wider than the fit, mixed with the prior so that no weight can
        # explode where the Gaussian is thin.
        chol = np.asarray(np.linalg.cholesky(wider**2 * cov + 1e-8 * np.eye(k)), dtype=np.float64)
        fitted = mean + rng.normal(0.0, 1.0, (n, k)) @ chol.T
        use_prior = rng.random(n) < _PRIOR_SHARE
        samples = np.where(use_prior[:, None], pop + rng.normal(0.0, PRIOR_SD, (n, k)), fitted)
        log_prior = log_prior_of(samples)
        log_q = np.logaddexp(
            np.log(_PRIOR_SHARE) + log_prior,
            np.log(1 - _PRIOR_SHARE) + _log_normal(samples, mean, chol),
        )
        return Posterior(samples, log_prior + log_likelihood(samples, shopper, **evidence) - log_q)

    # First around the mode, with the Laplace approximation's spread: drawn from the prior,
    # a shopper of hundreds of impressions, whose posterior is narrow, kept a handful of
    # samples that counted (an effective sample size of 1 of 16,000). Only a little wider
    # than the approximation: in eight dimensions a Gaussian 1.5 times as wide as a
    # Gaussian posterior keeps a quarter of its samples' worth, 1.2 times two thirds.
    post = drawn(*laplace(shopper, pop, **evidence), 1.2)
    # Then Gaussians fitted to the pass before, until the samples are not dominated by a few.
    for _ in range(_PASSES):
        if post.ess() >= n / 4:
            break
        w = np.exp(post.log_w - post.log_w.max())
        w /= w.sum()
        mean = w @ post.samples
        centred = post.samples - mean
        post = drawn(mean, centred.T @ (centred * w[:, None]) + 1e-4 * np.eye(k), 1.5)
    return post


def oracle_scores(
    data: HeldOut,
    store: Store,
    taste: Floats,
    shoppers: dict[int, Shopper],
    gap: Floats,
    *,
    samples: int,
    seed: int,
    queries: bool = True,
    purchases: bool = True,
    prior_only: bool = False,
) -> tuple[Floats, list[float]]:
    """The oracle's P(purchase) of every held-out candidate, and each shopper's ESS;
    `gap` as `with_gap` gave it to `shoppers` (none: zeros)."""
    pop = taste.mean(axis=0)
    users = {name: i for i, name in enumerate(store.user_ids)}
    items = {name: i for i, name in enumerate(store.item_ids)}
    rng = np.random.default_rng(seed)
    cache: dict[int, Posterior] = {}
    ess: list[float] = []
    out: list[Floats] = []
    for request in data.requests:
        user = users[request.user_id]
        post = cache.get(user)
        if post is None:
            shopper = None if prior_only else shoppers.get(user)
            post = cache[user] = posterior(
                shopper, pop, rng, samples, queries=queries, purchases=purchases
            )
            ess.append(post.ess())
        log_w = post.log_w
        want = wanted(request.context.page, request.context.query)
        if want >= 0 and queries and not prior_only:
            log_w = log_w + post.samples[:, want] - np.logaddexp.reduce(post.samples, axis=1)
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        cats = np.array([int(store.item_cat[items[c.item_id]]) for c in request.candidates])
        p = np.array([c.p_purchase for c in request.candidates])
        rest = (
            np.log(p / (1 - p))
            - taste[user, cats]
            + gap[user] * store._rel_price[0][[items[c.item_id] for c in request.candidates]]
        )
        probs = np.exp(_log_sigmoid(post.samples[:, cats] + rest))
        out.append(w @ probs)
    return np.concatenate(out), ess


def learner_quality(records: list[SimRecord], data: HeldOut) -> Quality:
    """The shipped learner (its delayed-feedback method, logreg) on the same stream and
    requests (bench/quality.py)."""
    from bench.quality import learner_run, learner_scorer
    from learner.redisconn import connect
    from learner.settings import LearnerSettings
    from stream.settings import StreamSettings

    client = connect(StreamSettings())
    shipped = LearnerSettings()
    learner, _ = learner_run(
        client, records, shipped.delayed_feedback, ["logreg"], shipped.join_window_s, lambda n: None
    )
    return quality(data, learner_scorer(learner, "logreg", records[-1].ts_ms / 1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="101,202,303,404")
    parser.add_argument("--count", type=int, default=60_000)
    parser.add_argument("--n-users", type=int, default=2_000)
    parser.add_argument("--n-items", type=int, default=500)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=4_000, help="importance samples a shopper")
    parser.add_argument("--learner", action="store_true", help="also the shipped learner")
    args = parser.parse_args()

    print(
        "| seed | records | hidden AUC | ceiling AUC | / hidden | calibration"
        " | typical price sensitivity | prior only | queries only | purchases only"
        " | learner / hidden | ESS min / median |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        config = SimulatorConfig(
            seed=seed, count=args.count, n_users=args.n_users, n_items=args.n_items
        )
        records = list(generate(config))
        store = world(config)
        # The hidden tastes (regime before any drift): the oracle knows the model, and
        # takes the taste out of each logit to put its posterior in.
        taste = store._taste[0]
        data = held_out(config, args.requests)
        known = sensitivity_gap(store, False)
        shoppers = observe(records, store, taste)

        def ratio(scores: Floats, data: HeldOut = data) -> Quality:
            ends = np.cumsum([len(r.candidates) for r in data.requests])[:-1]
            per_request = dict(zip(map(id, data.requests), np.split(scores, ends), strict=True))
            return quality(data, lambda request: per_request[id(request)])

        common = {"samples": args.samples, "seed": seed}
        full, ess = oracle_scores(data, store, taste, shoppers, known, **common)
        prior, _ = oracle_scores(data, store, taste, shoppers, known, prior_only=True, **common)
        wants, _ = oracle_scores(data, store, taste, shoppers, known, purchases=False, **common)
        bought, _ = oracle_scores(data, store, taste, shoppers, known, queries=False, **common)
        # The same oracle with the typical price sensitivity in place of each shopper's own:
        # a learner estimates that from a shopper's few purchases, if at all.
        typical = sensitivity_gap(store, True)
        unsure, _ = oracle_scores(
            data, store, taste, with_gap(shoppers, typical), typical, **common
        )
        ceiling = ratio(full)
        # Both sides scored the same candidates of the same requests.
        assert len(full) == len(data.p) == sum(len(r.candidates) for r in data.requests)
        learned = learner_quality(records, data) if args.learner else None
        learner_ratio = "-" if learned is None else f"{learned.ratio:.3f}"
        print(
            f"| {seed} | {len(records):,} | {ceiling.hidden_auc:.3f} | {ceiling.auc:.3f} | "
            f"{ceiling.ratio:.3f} | {ceiling.calibration:.2f} | {ratio(unsure).ratio:.3f} | "
            f"{ratio(prior).ratio:.3f} | "
            f"{ratio(wants).ratio:.3f} | {ratio(bought).ratio:.3f} | {learner_ratio} | "
            f"{min(ess):.0f} / {np.median(ess):.0f} |",
            flush=True,
        )
        print(f"  ({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
