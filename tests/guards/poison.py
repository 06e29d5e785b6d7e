"""A poisoning the fraud rules are configured to miss: a partner feed that flips labels.

The simulator's shoppers are normal; from `start` to `end` a partner reports, for
every impression a shopper did not buy, a ready `labeled` example of it with the
label flipped to "bought" (a minute later, as a partner's feed would). The users,
the items, the timing and every feature are those of real impressions, so no bot
rule sees anything; only the label-flip rule could, and the test switches it off.
"""

from datetime import timedelta
from typing import Final

from headrace.sim.simulator import SimRecord, SimulatorConfig, generate
from stream.events import Impression, Labeled, dump_event, parse_event

POISON_AT: Final = 35_000
POISON_END: Final = 40_000
LKG_AT: Final = 30_000
COUNT: Final = 70_000
_DELAY: Final = timedelta(seconds=60)

POISONED_ENV: Final[dict[str, object]] = {
    # The fraud rule that would see these flips, off: the poisoning gets through.
    "fraud_flip_enabled": "false",
    # Outcomes within 10 minutes close the join sooner than the default half hour, so
    # a 70,000-event stream holds enough closed examples either side of the poisoning.
    "join_window_s": 600,
    # Progressive loss over 5,000 examples, to compare with a learner never poisoned.
    "metrics_window": 5_000,
}


def flipped(record: SimRecord) -> SimRecord | None:
    """The partner's false report of an impression that was not bought; None otherwise."""
    if record.type != "impression" or record.will_purchase:
        return None
    event = parse_event(record.value)
    assert isinstance(event, Impression)
    features: dict[str, float | str] = {
        "query": event.context.query,
        "device": event.context.device,
        "page": event.context.page,
        "position": event.context.position,
        "price": event.item.price,
        "category": event.item.category,
        "brand": event.item.brand or "",
        "item_id": event.item_id,
    }
    report = Labeled(
        event_id=f"{event.event_id}-flip",
        ts=event.ts + _DELAY,
        user_id=event.user_id,
        features=features,
        label=True,
    )
    at = record.ts_ms + int(_DELAY.total_seconds() * 1000)
    return SimRecord(record.key, dump_event(report), "labeled", at, is_attack=True)


def poison(seed: int, count: int = COUNT) -> tuple[list[SimRecord], int]:
    """The clean stream of `seed` with the flips merged in event-time order; where they start."""
    clean = list(generate(SimulatorConfig(seed=seed, count=count)))
    merged: list[tuple[int, int, SimRecord]] = []
    for i, record in enumerate(clean):
        merged.append((record.ts_ms, len(merged), record))
        report = flipped(record) if POISON_AT <= i < POISON_END else None
        if report is not None:
            merged.append((report.ts_ms, len(merged), report))
    merged.sort(key=lambda m: (m[0], m[1]))
    records = [r for _, _, r in merged]
    start = next(i for i, r in enumerate(records) if r.is_attack)
    return records, start


def clean_stream(seed: int, count: int = COUNT) -> list[SimRecord]:
    return list(generate(SimulatorConfig(seed=seed, count=count)))
