"""The simulated yarn store: catalogue, shoppers and the hidden purchase model.

The world is drawn once from a seed. Purchases follow a logistic model the
learners never see, built from quantities they can observe or aggregate
(category, price, position, query, device, the user's history), so there is
real signal to find and a known optimum to compare against.
"""

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from stream.events import Context, Item

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CATEGORIES: Final = (
    "merino",
    "alpaca",
    "cotton",
    "acrylic",
    "silk",
    "mohair",
    "needles",
    "patterns",
)
DEVICES: Final = ("desktop", "mobile", "tablet")
PAGES: Final = ("search", "category", "home")

# Median price (EUR) and log-normal spread per category, in CATEGORIES order.
# Needles span 4 EUR double points to 150 EUR interchangeable sets, hence the spread.
_PRICE_MEDIAN: Final = np.array([11.0, 14.0, 6.5, 3.5, 17.0, 13.0, 9.0, 6.0])
_PRICE_SIGMA: Final = np.array([0.35, 0.35, 0.30, 0.30, 0.40, 0.35, 0.70, 0.45])

_BRANDS: Final = (
    ("Malabrigo", "Drops", "Rowan", "Sandnes"),
    ("Drops", "Lang", "Isager", "Filcolana"),
    ("Rico", "Scheepjes", "Drops", "Katia"),
    ("Stylecraft", "Paintbox", "Red Heart", "Lion Brand"),
    ("Lang", "Isager", "Manos"),
    ("Lang", "Drops", "Sandnes", "Rowan"),
    ("ChiaoGoo", "Addi", "KnitPro", "Clover"),
    ("PetiteKnit", "Drops Design", "Tin Can Knits", "Ravelry indie"),
)
_QUERIES: Final = (
    ("merino", "merino dk", "merino fingering", "superwash merino", "merino aran"),
    ("alpaca", "baby alpaca", "alpaca lace", "alpaca dk"),
    ("cotton", "cotton dk", "organic cotton", "mercerized cotton", "cotton aran"),
    ("acrylic", "acrylic chunky", "budget yarn", "acrylic dk"),
    ("silk", "silk blend", "mulberry silk lace"),
    ("mohair", "kid mohair", "mohair silk"),
    ("bamboo needles 4mm", "circular needles", "dpn 2.5mm", "interchangeable needles"),
    ("sock pattern", "sweater pattern", "shawl pattern", "beanie pattern"),
)

# Hidden model coefficients that do not depend on the user.
# Each is (before drift, after drift). The drift is a concept change across the whole
# store, not only in each shopper's tastes (per-user aggregates would soon absorb those):
# shoppers now buy what complements their query rather than what matches it, and a new
# mobile checkout beats the old desktop one.
_POSITION_COEF: Final = (-0.35, -0.35)  # times log1p(position): attention fades down the page
_MATCH_COEF: Final = (1.0, -1.0)  # the item's category is what the shopper asked for
_DEVICE_EFFECT: Final = (
    np.array([0.0, -0.4, -0.2]),  # checkout is harder on small screens
    np.array([-0.6, 0.3, 0.0]),
)
_SEARCH_MATCH_SHARE: Final = 0.7  # share of a search page drawn from the queried category
_PAGE_WEIGHTS: Final = np.cumsum([0.7, 0.2, 0.1])


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of items shown to a user, with the hidden purchase probabilities."""

    user: int
    device: str
    page: str
    query: str
    items: list[int]
    p_purchase: list[float]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item a storefront could show, as it would send it to /predict."""

    item_id: str
    item: Item
    p_purchase: float
    """Hidden probability that the user buys it when shown at the request's position."""


@dataclass(frozen=True, slots=True)
class ShopRequest:
    """What a storefront knows when it asks for a ranking: user, context, candidates."""

    user_id: str
    context: Context
    candidates: tuple[Candidate, ...]


class Store:
    """Items, shoppers (humans, then bots) and the hidden purchase model, before and after drift."""

    def __init__(
        self,
        seed: int,
        n_users: int,
        n_items: int,
        n_bots: int = 0,
        purchase_rate: float = 0.05,
        page_size: int = 10,
    ) -> None:
        world, calibration = np.random.default_rng(np.random.SeedSequence([seed, 1])).spawn(2)
        n_cat = len(CATEGORIES)
        self.n_users = n_users
        self.n_bots = n_bots
        total = n_users + n_bots
        width = max(5, len(str(total - 1)))
        # Bots are extra accounts in the same id format: only their behaviour gives them away.
        self.user_ids = [f"u{i:0{width}d}" for i in range(total)]
        self.bot_ids = frozenset(self.user_ids[n_users:])
        self.item_ids = [f"i{i:0{max(5, len(str(n_items - 1)))}d}" for i in range(n_items)]

        self.item_cat: IntArray = world.integers(0, n_cat, size=n_items)
        brand_pick = world.integers(0, 1 << 30, size=n_items)
        self.item_brand = [
            _BRANDS[c][b % len(_BRANDS[c])]
            for c, b in zip(self.item_cat.tolist(), brand_pick.tolist(), strict=True)
        ]
        log_med = np.log(_PRICE_MEDIAN[self.item_cat])
        log_price = log_med + world.normal(0.0, 1.0, n_items) * _PRICE_SIGMA[self.item_cat]
        price = np.maximum(np.round(np.exp(log_price), 2), 0.5)
        # Drift re-prices whole categories (a supplier change, a sale season).
        cat_shift = world.normal(0.0, 0.5, n_cat)
        price_after = np.maximum(np.round(price * np.exp(cat_shift[self.item_cat]), 2), 0.5)
        self.price: tuple[list[float], list[float]] = (price.tolist(), price_after.tolist())
        # Relative to the regime-0 medians, so a drift price rise reads as "dearer".
        self._rel_price = (np.log(price) - log_med, np.log(price_after) - log_med)
        self.items_by_cat = [np.flatnonzero(self.item_cat == c) for c in range(n_cat)]
        self._not_cat = [np.flatnonzero(self.item_cat != c) for c in range(n_cat)]

        pop = world.normal(0.0, 0.5, n_cat)
        affinity = pop + world.normal(0.0, 0.8, (total, n_cat))
        sens = world.lognormal(0.0, 0.3, total)
        # Drift: every shopper now favours the categories they avoided, and price sensitivity
        # flips. (A derangement of the categories was drawn here once; the draw stays so the
        # worlds of a seed are the same as before.)
        _derangement(world, n_cat)
        self._taste = (affinity, -affinity)
        self._sens = (sens, -sens)
        pref = world.integers(0, len(DEVICES), size=total)
        device_p = np.full((total, len(DEVICES)), 0.1)
        device_p[np.arange(total), pref] = 0.8
        self._device_cdf = np.cumsum(device_p, axis=1)
        self._user_cdf = np.cumsum(world.pareto(1.5, n_users) + 0.05)
        self._user_cdf /= self._user_cdf[-1]
        self.page_size = page_size
        self._item_cache: tuple[dict[int, Item], dict[int, Item]] = ({}, {})
        # One intercept per regime: drift changes who buys what, not how much the store sells.
        self.bias = (0.0, 0.0)
        self.bias = (
            self._calibrate(calibration, purchase_rate, False),
            self._calibrate(calibration, purchase_rate, True),
        )

    def pick_user(self, rng: np.random.Generator) -> int:
        """A human shopper; some shop far more often than others."""
        return min(int(np.searchsorted(self._user_cdf, rng.random())), self.n_users - 1)

    def pick_bot(self, rng: np.random.Generator) -> int:
        return self.n_users + int(rng.integers(0, self.n_bots))

    def item(self, index: int, drifted: bool) -> Item:
        """Item `index` as the storefront describes it (price as of the regime)."""
        # Cached: items are immutable, and building one per impression dominates otherwise.
        cache = self._item_cache[drifted]
        found = cache.get(index)
        if found is None:
            found = cache[index] = Item(
                price=self.price[drifted][index],
                category=CATEGORIES[self.item_cat[index]],
                brand=self.item_brand[index],
            )
        return found

    def logits(
        self,
        user: int,
        items: IntArray,
        positions: FloatArray,
        want_cat: int,
        device: int,
        drifted: bool,
    ) -> FloatArray:
        """The hidden model: log-odds that `user` buys each of `items` when shown."""
        cats = self.item_cat[items]
        logits: FloatArray = (
            self.bias[drifted]
            + self._taste[drifted][user, cats]
            - self._sens[drifted][user] * self._rel_price[drifted][items]
            + _POSITION_COEF[drifted] * np.log1p(positions)
            + _MATCH_COEF[drifted] * (cats == want_cat)
            + _DEVICE_EFFECT[drifted][device]
        )
        return logits

    def sample_page(
        self,
        rng: np.random.Generator,
        user: int,
        drifted: bool,
        k: int | None = None,
        positioned: bool = True,
    ) -> Page:
        """What the storefront shows `user` in one visit: a query, a device, k items."""
        page, logits = self._sample(
            rng, user, drifted, self.page_size if k is None else k, positioned
        )
        return Page(*page, _sigmoid(logits).tolist())

    def _sample(
        self,
        rng: np.random.Generator,
        user: int,
        drifted: bool,
        k: int,
        positioned: bool,
    ) -> tuple[tuple[int, str, str, str, list[int]], FloatArray]:
        draws = rng.random(4)
        cdf = self._device_cdf[user]
        device = min(int(np.searchsorted(cdf, draws[0] * cdf[-1])), len(DEVICES) - 1)
        kind = int(np.searchsorted(_PAGE_WEIGHTS, draws[1] * _PAGE_WEIGHTS[-1]))
        taste = self._taste[drifted][user]
        # Shoppers mostly look for what they like.
        cdf = np.cumsum(np.exp(taste - taste.max()))
        want = min(int(np.searchsorted(cdf, draws[2] * cdf[-1])), len(CATEGORIES) - 1)
        if kind == 0:
            words = _QUERIES[want]
            query = words[int(draws[3] * len(words))]
            n_match = min(round(k * _SEARCH_MATCH_SHARE), len(self.items_by_cat[want]))
        elif kind == 1:
            query = CATEGORIES[want]
            n_match = min(k, len(self.items_by_cat[want]))
        else:
            query, want, n_match = "", -1, 0
        items = self._draw_items(rng, want, n_match, k)
        positions = np.arange(len(items), dtype=np.float64) if positioned else np.zeros(len(items))
        logits = self.logits(user, items, positions, want, device, drifted)
        return (user, DEVICES[device], PAGES[kind], query, items.tolist()), logits

    def _draw_items(self, rng: np.random.Generator, want: int, n_match: int, k: int) -> IntArray:
        if want < 0:
            return rng.choice(len(self.item_ids), min(k, len(self.item_ids)), replace=False)
        match = self.items_by_cat[want]
        other = self._not_cat[want]
        n_other = min(k - n_match, len(other))
        picked = np.concatenate(
            [
                rng.choice(match, n_match, replace=False) if n_match else match[:0],
                rng.choice(other, n_other, replace=False) if n_other else other[:0],
            ]
        )
        # The storefront's ranking is blind to the hidden model, so position bias is identifiable.
        return rng.permutation(picked)

    def request_for(
        self,
        user: int | str,
        rng: np.random.Generator,
        *,
        k: int = 20,
        drifted: bool = False,
    ) -> ShopRequest:
        """A realistic /predict request for `user`: a context and up to `k` distinct candidates.

        Each candidate carries its hidden purchase probability as if shown at the top
        of the page (position 0), so sorting by it gives the ideal ranking.
        """
        index = self.user_ids.index(user) if isinstance(user, str) else user
        page = self.sample_page(rng, index, drifted, k=k, positioned=False)
        context = Context(query=page.query, device=page.device, page=page.page, position=0)
        candidates = tuple(
            Candidate(self.item_ids[i], self.item(i, drifted), p)
            for i, p in zip(page.items, page.p_purchase, strict=True)
        )
        return ShopRequest(self.user_ids[index], context, candidates)

    def _calibrate(self, rng: np.random.Generator, target: float, drifted: bool) -> float:
        """The intercept that makes `target` the share of impressions ending in a purchase."""
        # Called while self.bias is 0, so these are the bias-free logits of typical pages.
        logits = np.concatenate(
            [
                self._sample(rng, self.pick_user(rng), drifted, self.page_size, True)[1]
                for _ in range(1500)
            ]
        )
        low, high = -20.0, 20.0
        for _ in range(50):
            mid = (low + high) / 2
            if float(_sigmoid(logits + mid).mean()) < target:
                low = mid
            else:
                high = mid
        return (low + high) / 2


def _derangement(rng: np.random.Generator, n: int) -> IntArray:
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm
