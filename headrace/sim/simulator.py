"""A seeded clickstream from a simulated yarn store.

Pure Python and numpy: no Kafka here, so tests, benchmarks and the producer
share one source of events. The same config gives the same records, byte for
byte. Shoppers' sessions (a query, a page of impressions, later clicks, carts
and purchases) are merged on a heap so records come out in event-time order.
"""

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from headrace.sim.malformed import malformed
from headrace.sim.store_world import Page, Store
from stream.events import (
    AddToCart,
    Click,
    Context,
    Impression,
    Labeled,
    Purchase,
    dump_event,
)

RecordType = Literal["impression", "click", "add_to_cart", "purchase", "labeled", "malformed"]
AnyEvent = Impression | Click | AddToCart | Purchase | Labeled

DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)

# Outcome delays after the impression (ms): a fixed floor plus an exponential tail,
# so outcomes land seconds to minutes later, as on a real storefront.
_CLICK_DELAY: Final = (1_500, 12_000)
_CART_DELAY: Final = (4_000, 40_000)
_PURCHASE_DELAY: Final = (10_000, 120_000)
_LABELED_DELAY_MS: Final = 600_000  # a partner reports joined examples after its own window
_BROWSE_CLICK: Final = 0.10  # chance a non-buyer clicks the top item anyway


class SimulatorConfig(BaseModel):
    """What to simulate. Counts are in emitted records, malformed ones included."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, ge=0)
    n_users: int = Field(default=2_000, ge=1, le=10_000_000)
    n_items: int = Field(default=500, ge=1, le=10_000_000)
    count: int | None = Field(default=None, ge=0)
    """Records to generate; None for an endless stream."""
    start: AwareDatetime = DEFAULT_START
    """Event time of the first session; fixed so a seed always gives the same bytes."""
    session_gap_s: float = Field(default=1.0, gt=0)
    """Mean event-time seconds between two sessions (Poisson arrivals)."""
    page_size: int = Field(default=10, ge=1, le=1_000)
    purchase_rate: float = Field(default=0.05, gt=0, lt=0.5)
    """Share of human impressions that end in a purchase, before and after drift."""
    drift_at: int | None = Field(default=None, ge=0)
    """Sessions starting after this many records follow a changed hidden purchase model
    (inverted tastes and price sensitivity, query match and device effects reversed) and
    shifted prices; outcomes of earlier sessions still trickle in for a few minutes of
    event time."""
    attack_at: int | None = Field(default=None, ge=0)
    """Sessions starting after this many records may be bots that flood purchases and
    flip labels."""
    attack_users: int = Field(default=40, ge=1, le=100_000)
    attack_share: float = Field(default=0.25, ge=0, le=1)
    """Share of sessions, once the attack started, that are bot sessions."""
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of records that are broken (bad JSON, schema violations, oversize ...)."""
    labeled_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of human sessions reported as ready `labeled` examples instead of raw events."""


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One Kafka record the simulator produces, with the ground truth behind it."""

    key: bytes
    """The user id, UTF-8: the partitioning key."""
    value: bytes
    type: RecordType
    ts_ms: int
    """Event time, ms since the epoch (malformed records: the simulated clock)."""
    p_purchase: float | None = None
    """Impressions and labeled examples: the hidden probability that the user buys."""
    will_purchase: bool | None = None
    """Impressions and labeled examples: whether the simulator made the user buy."""
    is_attack: bool = False


# Heap entries: (event time ms, sequence number, user id, event, p, will_purchase, is_attack).
# The sequence number breaks ties in creation order, so nothing else is ever compared.
_Pending = tuple[int, int, str, AnyEvent, float | None, bool | None, bool]


class _Simulation:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.store = world(config)
        sessions, outcomes = np.random.default_rng(np.random.SeedSequence([config.seed, 2])).spawn(
            2
        )
        self.rng = sessions
        self.outcome_rng = outcomes
        self.broken = random.Random(config.seed * 7919 + 3)
        self.epoch_ms = int(config.start.timestamp() * 1000)
        self.start = config.start.astimezone(UTC)
        self.heap: list[_Pending] = []
        self.seq = 0  # ids of well-formed events
        self.order = 0  # heap tie-breaker
        self.broken_seq = 0  # ids inside malformed records, apart so noise never shifts real ids
        self.prefix = f"s{config.seed}"

    def _ts(self, ms: int) -> datetime:
        return self.start + timedelta(milliseconds=ms - self.epoch_ms)

    def _id(self, kind: str) -> str:
        self.seq += 1
        return f"{self.prefix}-{kind}{self.seq}"

    def _push(
        self,
        ms: int,
        user: str,
        event: AnyEvent,
        p: float | None = None,
        will: bool | None = None,
        attack: bool = False,
    ) -> None:
        self.order += 1
        heapq.heappush(self.heap, (ms, self.order, user, event, p, will, attack))

    def run(self) -> Iterator[SimRecord]:
        cfg = self.config
        total = cfg.count
        drift_at = cfg.drift_at if cfg.drift_at is not None else -1
        attack_at = cfg.attack_at if cfg.attack_at is not None else -1
        gap_ms = cfg.session_gap_s * 1000.0
        next_session = float(self.epoch_ms)
        emitted = 0
        clock = self.epoch_ms
        heap = self.heap
        while total is None or emitted < total:
            if cfg.malformed_rate and self.broken.random() < cfg.malformed_rate:
                yield self._malformed(clock)
                emitted += 1
                continue
            if heap and heap[0][0] <= next_session:
                ms, _, user, event, p, will, attack = heapq.heappop(heap)
                clock = ms
                yield SimRecord(user.encode(), dump_event(event), event.type, ms, p, will, attack)
                emitted += 1
                continue
            # No pending event is due before the next session starts: start it.
            drifted = 0 <= drift_at <= emitted
            if 0 <= attack_at <= emitted and self.rng.random() < cfg.attack_share:
                self._bot_session(int(next_session), drifted)
            elif cfg.labeled_rate and self.rng.random() < cfg.labeled_rate:
                self._labeled_session(int(next_session), drifted)
            else:
                self._session(int(next_session), drifted)
            next_session += self.rng.exponential(gap_ms)

    def _impressions(
        self, t0: int, page: Page, drifted: bool, attack: bool, bought: list[bool]
    ) -> list[tuple[int, str, str, int]]:
        """Push one page of impressions; return (time, impression id, item id, i) per item."""
        store = self.store
        user = store.user_ids[page.user]
        shown = []
        for position, (item, p) in enumerate(zip(page.items, page.p_purchase, strict=True)):
            ms = t0 + 20 * position  # rendering order down the page
            impression_id = self._id("m")
            item_id = store.item_ids[item]
            event = Impression(
                event_id=self._id("e"),
                ts=self._ts(ms),
                user_id=user,
                impression_id=impression_id,
                item_id=item_id,
                context=Context(
                    query=page.query, device=page.device, page=page.page, position=position
                ),
                item=store.item(item, drifted),
            )
            self._push(ms, user, event, p, bought[position], attack)
            shown.append((ms, impression_id, item_id, position))
        return shown

    def _session(self, t0: int, drifted: bool) -> None:
        store = self.store
        page = store.sample_page(self.rng, store.pick_user(self.rng), drifted)
        n = len(page.items)
        # One uniform per item decides purchase, cart and click together, so
        # purchase implies cart implies click and P(purchase) is exactly p.
        u = self.outcome_rng.random(n).tolist()
        delays = self.outcome_rng.exponential(1.0, (n, 3)).tolist()
        p_buy = page.p_purchase
        bought = [u[i] < p_buy[i] for i in range(n)]
        shown = self._impressions(t0, page, drifted, False, bought)
        user = store.user_ids[page.user]
        for (ms, impression_id, item_id, position), p, x, d in zip(
            shown, p_buy, u, delays, strict=True
        ):
            p_click = p + (1 - p) * _BROWSE_CLICK / (1 + 0.3 * position)
            if x >= p_click:
                continue
            ms += _CLICK_DELAY[0] + int(d[0] * _CLICK_DELAY[1])
            self._outcome(Click, ms, user, item_id, impression_id)
            if x >= p + (p_click - p) * 0.3:
                continue
            ms += _CART_DELAY[0] + int(d[1] * _CART_DELAY[1])
            self._outcome(AddToCart, ms, user, item_id, impression_id)
            if x < p:
                ms += _PURCHASE_DELAY[0] + int(d[2] * _PURCHASE_DELAY[1])
                self._outcome(Purchase, ms, user, item_id, impression_id)

    def _outcome(
        self,
        kind: type[Click | AddToCart | Purchase],
        ms: int,
        user: str,
        item_id: str,
        impression_id: str | None,
        attack: bool = False,
    ) -> None:
        event = kind(
            event_id=self._id("e"),
            ts=self._ts(ms),
            user_id=user,
            item_id=item_id,
            impression_id=impression_id,
        )
        self._push(ms, user, event, attack=attack)

    def _labeled_session(self, t0: int, drifted: bool) -> None:
        store = self.store
        page = store.sample_page(self.rng, store.pick_user(self.rng), drifted)
        user = store.user_ids[page.user]
        u = self.outcome_rng.random(len(page.items)).tolist()
        ms = t0 + _LABELED_DELAY_MS
        for position, (item, p) in enumerate(zip(page.items, page.p_purchase, strict=True)):
            shown = store.item(item, drifted)
            features: dict[str, float | str] = {
                "query": page.query,
                "device": page.device,
                "page": page.page,
                "position": position,
                "price": shown.price,
                "category": shown.category,
                "brand": shown.brand or "",
                "item_id": store.item_ids[item],
            }
            label = u[position] < p
            event = Labeled(
                event_id=self._id("e"),
                ts=self._ts(ms),
                user_id=user,
                features=features,
                label=label,
            )
            self._push(ms, user, event, p, label)

    def _bot_session(self, t0: int, drifted: bool) -> None:
        """A bot visit: a purchase storm with no impressions, or a label-flipping page."""
        store = self.store
        bot = store.pick_bot(self.rng)
        user = store.user_ids[bot]
        if self.rng.random() < 0.5:
            n = int(self.rng.integers(8, 25))
            items = self.rng.integers(0, len(store.item_ids), n).tolist()
            offsets = np.sort(self.rng.integers(0, 1_000, n)).tolist()  # all within a second
            for item, offset in zip(items, offsets, strict=True):
                self._outcome(Purchase, t0 + offset, user, store.item_ids[item], None, True)
            return
        page = store.sample_page(self.rng, bot, drifted)
        # Buy what the hidden model says this shopper would not, never what it would.
        order = np.argsort(page.p_purchase)
        n_buy = min(len(order), int(self.rng.integers(2, 4)))
        bought = [False] * len(order)
        for i in order[:n_buy].tolist():
            bought[i] = True
        shown = self._impressions(t0, page, drifted, True, bought)
        for ms, impression_id, item_id, position in shown:
            if bought[position]:
                # Inhuman speed: click, cart and buy within half a second of the page.
                self._outcome(Click, ms + 150, user, item_id, impression_id, True)
                self._outcome(AddToCart, ms + 300, user, item_id, impression_id, True)
                self._outcome(Purchase, ms + 450, user, item_id, impression_id, True)

    def _malformed(self, clock: int) -> SimRecord:
        store = self.store
        user = store.user_ids[self.broken.randrange(store.n_users)]
        item = self.broken.randrange(len(store.item_ids))
        shown = store.item(item, False)
        self.broken_seq += 1
        template = {
            "event_id": f"{self.prefix}-x{self.broken_seq}",
            "type": "impression",
            "ts": self._ts(clock).isoformat().replace("+00:00", "Z"),
            "user_id": user,
            "impression_id": f"{self.prefix}-xm{self.broken_seq}",
            "item_id": store.item_ids[item],
            "context": {"query": "merino dk", "device": "mobile", "page": "search", "position": 0},
            "item": {"price": shown.price, "category": shown.category, "brand": shown.brand},
        }
        return SimRecord(user.encode(), malformed(self.broken, template), "malformed", clock)


def generate(config: SimulatorConfig) -> Iterator[SimRecord]:
    """The records `config` describes, in event-time order; endless when config.count is None."""
    return _Simulation(config).run()


def world(config: SimulatorConfig) -> Store:
    """The store `config` simulates (same users, items and hidden model as generate())."""
    return Store(
        config.seed,
        config.n_users,
        config.n_items,
        n_bots=config.attack_users,
        purchase_rate=config.purchase_rate,
        page_size=config.page_size,
    )
