"""The soak benchmark's account of every event, once the run is over and the learner caught up.

What was produced is known exactly without having kept it: the simulator is seeded, sends
its records in order and reports how many Kafka acknowledged, so the first that many
records of the same configuration are the ones sent. Against them:

- the event ids the committed state took in (bench/soak_watch.py followed them);
- the learner's committed counters (`event_<type>`, `rejected_<reason>`, the join's);
- the end offsets of the events topic, and the dead-letter and quarantine topics.
"""

from collections import Counter
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import orjson

from bench.soak_accounting import CountRow, IdAudit, audit_counts, audit_ids, joins_balance
from bench.soak_watch import RedisWatch
from headrace.sim.simulator import SimulatorConfig, generate
from learner.dedup import event_hash
from learner.layout import ShardKeys
from learner.redisconn import connect
from stream.events import Rejection, parse_event
from stream.settings import StreamSettings
from tests.learner.harness import end_offsets, read_all


@dataclass(frozen=True)
class SideTopic:
    copies: int
    """Records in the topic; a replay after a crash may write a record's copy twice."""
    sources: int
    """Distinct source records (partition, offset) among them."""


@dataclass(frozen=True)
class Audit:
    produced: dict[str, Any] | None
    """The simulator's own report (None if it failed)."""
    produced_types: Counter[str]
    rejections: Counter[str]
    """The reasons the learner must give for the malformed records produced."""
    in_kafka: int
    committed_offsets: int
    counts: dict[str, int]
    joins: dict[str, int]
    ids: IdAudit
    rows: list[CountRow]
    seen_breaks: int
    dlq: SideTopic
    quarantine: SideTopic

    @property
    def produced_total(self) -> int:
        return sum(self.produced_types.values())

    @property
    def dead_lettered(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith("rejected_"))

    @property
    def quarantined(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith("quarantined_"))

    @property
    def taken_in(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith("event_"))

    @property
    def learned(self) -> int:
        """Events applied to the models: taken in, neither quarantined nor a duplicate."""
        return self.taken_in - self.quarantined - self.counts.get("duplicate_event", 0)

    @property
    def lost(self) -> int:
        rejected = sum(r.lost for r in self.rows if r.name.startswith("rejected_"))
        return self.ids.lost + rejected

    @property
    def twice(self) -> int:
        rejected = sum(r.twice for r in self.rows if r.name.startswith("rejected_"))
        return self.ids.twice + rejected

    @property
    def joins_balance(self) -> int:
        return joins_balance(self.counts, self.joins)

    @property
    def quarantined_uncommitted(self) -> int:
        """Records in the quarantine topic beyond those the committed state quarantined (at
        least): verdicts of a learner whose work was then fenced off."""
        return max(0, self.quarantine.sources - self.quarantined)


def expected(config: SimulatorConfig, n: int) -> tuple[Counter[str], Counter[str], np.ndarray]:
    """Types, rejection reasons and event-id hashes of the first `n` records of `config`."""
    types: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    hashes = np.empty(n, dtype=np.uint64)
    filled = 0
    for record in islice(generate(config), n):
        if record.type == "malformed":
            parsed = parse_event(record.value)
            if isinstance(parsed, Rejection):
                types["malformed"] += 1
                reasons[parsed.reason] += 1
                continue
            kind, event_id = parsed.type, parsed.event_id
        else:
            kind, event_id = record.type, orjson.loads(record.value)["event_id"]
        types[kind] += 1
        hashes[filled] = event_hash(event_id)
        filled += 1
    return types, reasons, hashes[:filled]


def side_topic(stream: StreamSettings, topic: str) -> SideTopic:
    records = read_all(stream, topic)
    sources = {
        (dict(r.headers).get("source_partition"), dict(r.headers).get("source_offset"))
        for r in records
    }
    return SideTopic(len(records), len(sources))


def audit(
    stream: StreamSettings,
    config: SimulatorConfig,
    produced: dict[str, Any] | None,
    watch: RedisWatch,
) -> Audit:
    in_kafka = sum(end_offsets(stream).values())
    # Without the simulator's report (it failed), Kafka's count is all there is to go by.
    n = int(produced["total"]) if produced is not None else in_kafka
    types, reasons, hashes = expected(config, n)
    client = connect(stream)
    try:
        raw = client.hget(ShardKeys(stream.key_prefix, "main").state, "meta")
    finally:
        client.close()
    meta = orjson.loads(raw) if raw is not None else {}
    counts = {k: int(v) for k, v in meta.get("counts", {}).items()}
    return Audit(
        produced=produced,
        produced_types=types,
        rejections=reasons,
        in_kafka=in_kafka,
        committed_offsets=sum(int(o) for o in meta.get("offsets", {}).values()),
        counts=counts,
        joins={k: int(v) for k, v in meta.get("joins", {}).items()},
        ids=audit_ids(hashes, watch.seen.hashes()),
        rows=audit_counts(types, reasons, counts),
        seen_breaks=watch.seen.breaks,
        dlq=side_topic(stream, stream.topic_dlq),
        quarantine=side_topic(stream, stream.topic_quarantine),
    )
