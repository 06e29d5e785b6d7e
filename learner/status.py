"""`headrace status`: the state of a deployment on one screen, read from Redis and Kafka.

Everything here is read-only and bounded in time: one pipelined round trip per shard,
one end-offsets request to Kafka, the newest alerts. The learners' own Prometheus
endpoints are not needed: what they commit to Redis is the truth operators act on.
"""

import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from learner import alertstore
from learner.counters import MISROUTED, QUARANTINED, REJECTED, by_prefix
from learner.epoch import NO_STATE
from learner.layout import ShardKeys, decode_offsets, queue_summary, summary
from learner.redisconn import connect
from stream.probe import answering, end_offsets
from stream.settings import StreamSettings
from stream.shards import shard_names

_METRICS = (
    "rolling_log_loss",
    "log_loss",
    "rolling_roc_auc",
    "roc_auc",
    "rolling_calibration",
    "calibration",
)


@dataclass(frozen=True, slots=True)
class VariantStatus:
    name: str
    kind: str
    n_learned: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class ShardStatus:
    name: str
    holder: str | None
    """The active learner (host:pid:id), or None when no learner owns the shard."""
    generation: int | None
    lease_expires_s: float | None
    version: int | None
    """The committed state's version; None when the shard never published."""
    age_s: float | None
    offsets: dict[int, int]
    lag: dict[int, int] | None
    """Records between the committed offsets and the end of each partition (None: unknown)."""
    variants: list[VariantStatus]
    quarantined: dict[str, int]
    rejected: dict[str, int]
    misrouted: int
    """Events on another partition than Kafka's default partitioner gives their user_id."""
    lineage: dict[str, Any]
    queued_commands: int
    epoch: int | None = None
    """The committed state's epoch (learner/epoch.py): states compare by (epoch, version)."""

    @property
    def total_lag(self) -> int | None:
        return None if self.lag is None else sum(self.lag.values())


@dataclass(frozen=True, slots=True)
class Status:
    at: float
    prefix: str
    redis_url: str
    redis_up: bool
    kafka_bootstrap: str
    kafka_up: bool
    topic: str
    redis_error: str = ""
    """Why Redis did not answer, when it did not (a refused password, ...)."""
    shards: list[ShardStatus] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        """What makes the stack unusable, or None."""
        if not self.redis_up:
            why = f" ({self.redis_error})" if self.redis_error else ""
            return f"Redis at {self.redis_url} does not answer{why}"
        if not self.kafka_up:
            return f"Kafka at {self.kafka_bootstrap} does not answer"
        return None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2)


def redis_problem(client: redis.Redis) -> str | None:
    """None when Redis answers PING; else why not, with a hint for a refused password."""
    try:
        return None if client.ping() else "no answer"
    except redis.AuthenticationError as exc:
        return f"{exc}: set HEADRACE_REDIS_PASSWORD to the password it requires"
    except redis.sentinel.MasterNotFoundError as exc:
        # Sentinels that refuse the password: redis-py names the cause only in the message.
        if "AuthenticationError" in str(exc):
            return (
                "the sentinels refuse it: set HEADRACE_REDIS_PASSWORD to the password it requires"
            )
        return ""
    except redis.RedisError:
        return ""


def _shard(
    client: redis.Redis, keys: ShardKeys, ends: dict[int, int] | None, now: float
) -> ShardStatus:
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.lease)
    pipe.pttl(keys.lease)
    queue_summary(pipe, keys)
    pipe.llen(keys.control)
    lease, ttl_ms, published, queued = pipe.execute()
    stamp, meta = summary(published)
    holder = generation = None
    if lease is not None:
        owner, _, gen = lease.decode().rpartition("|")
        holder, generation = owner, int(gen) if gen.isdigit() else None
    offsets = decode_offsets(meta.get("offsets", {}))
    partitions = meta.get("partitions") or sorted(offsets)
    lag = None
    if ends is not None and meta:
        lag = {p: max(0, ends.get(p, 0) - offsets.get(p, 0)) for p in partitions}
    counts: dict[str, int] = meta.get("counts", {})
    published_at = meta.get("published_at")
    return ShardStatus(
        name=keys.shard,
        holder=holder,
        generation=generation,
        lease_expires_s=ttl_ms / 1000 if lease is not None and ttl_ms > 0 else None,
        version=stamp.version if stamp != NO_STATE else None,
        epoch=stamp.epoch if stamp != NO_STATE else None,
        age_s=max(0.0, now - published_at) if published_at is not None else None,
        offsets=offsets,
        lag=lag,
        variants=[
            VariantStatus(
                name,
                str(v.get("kind", "?")),
                int(v.get("n_learned", 0)),
                _known(v.get("metrics", {})),
            )
            for name, v in meta.get("variants", {}).items()
        ],
        quarantined=_counts(counts, QUARANTINED),
        rejected=_counts(counts, REJECTED),
        misrouted=int(counts.get(MISROUTED, 0)),
        lineage=meta.get("lineage", {}),
        queued_commands=int(queued),
    )


def _counts(counts: dict[str, int], prefix: str) -> dict[str, int]:
    return {k: n for k, n in sorted(by_prefix(counts, prefix).items()) if n}


def gather(settings: StreamSettings, *, n_alerts: int = 5, timeout_s: float = 2.0) -> Status:
    """Read the deployment's state; unreachable services are reported, never raised."""
    now = time.time()
    client: redis.Redis = connect(
        settings,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # a status answers now: no retries with backoff
    )
    try:
        kafka_up = answering(settings, timeout=timeout_s)
        problem = redis_problem(client)
        status = Status(
            at=now,
            prefix=settings.key_prefix,
            # Never the password, whether in the URL or not.
            redis_url=settings.redis_url_shown,
            redis_up=problem is None,
            redis_error=problem or "",
            kafka_bootstrap=settings.kafka_bootstrap,
            kafka_up=kafka_up,
            topic=settings.topic_events,
        )
        if not status.redis_up:
            return status
        ends = end_offsets(settings, timeout_s) if kafka_up else None
        shards = [
            _shard(client, ShardKeys(settings.key_prefix, name), ends, now)
            for name in shard_names(settings.shards)
        ]
        alerts = alertstore.recent(client, settings.key_prefix, limit=n_alerts)
        return replace(status, shards=shards, alerts=alerts)
    finally:
        client.close()


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _known(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics shown, without the undefined ones (None: an AUC of one class)."""
    return {k: float(metrics[k]) for k in _METRICS if metrics.get(k) is not None}


def _pair(metrics: dict[str, float], rolling: str, total: str, digits: int = 4) -> str:
    def fmt(name: str) -> str:
        return f"{metrics[name]:.{digits}f}" if name in metrics else "-"

    return f"{fmt(rolling)} / {fmt(total)}"


def _shard_lines(shard: ShardStatus) -> list[str]:
    if shard.holder is None:
        owner = "NO LEARNER owns it"
    else:
        expires = f", expires in {shard.lease_expires_s:.1f} s" if shard.lease_expires_s else ""
        owner = f"learner {shard.holder} (generation {shard.generation}{expires})"
    lines = [f"shard {shard.name}: {owner}"]
    if shard.version is None:
        lines.append("  state   none published yet")
        return lines
    lag = "unknown (Kafka)" if shard.total_lag is None else f"{shard.total_lag}"
    offsets = " ".join(f"{p}:{o}" for p, o in sorted(shard.offsets.items()))
    lines.append(
        f"  state   epoch {shard.epoch}, version {shard.version}, published {_ago(shard.age_s)}, "
        f"lag {lag}, offsets {offsets}"
    )
    lines.append(
        f"  {'variant':<14} {'kind':<8} {'learned':>9}  {'log loss roll/all':<17}  "
        f"{'AUC roll/all':<15}  calibration roll/all"
    )
    for v in shard.variants:
        lines.append(
            f"  {v.name:<14} {v.kind:<8} {v.n_learned:>9}  "
            f"{_pair(v.metrics, 'rolling_log_loss', 'log_loss'):<17}  "
            f"{_pair(v.metrics, 'rolling_roc_auc', 'roc_auc', 3):<15}  "
            f"{_pair(v.metrics, 'rolling_calibration', 'calibration', 2)}"
        )
    guarded = ", ".join(f"{k} {n}" for k, n in shard.quarantined.items()) or "none"
    dead = ", ".join(f"{k} {n}" for k, n in shard.rejected.items()) or "none"
    lines.append(f"  quarantined: {guarded}; dead letters: {dead}; misrouted: {shard.misrouted}")
    lineage = shard.lineage
    if lineage.get("restored_from"):
        how = "with replay" if lineage.get("replay") else "without replay"
        lines.append(f"  lineage restored from {lineage['restored_from']} ({how})")
    elif lineage.get("rolled_back_variant"):
        lines.append(
            f"  lineage {lineage['rolled_back_variant']} rolled back: {lineage.get('reason', '')}"
        )
    if shard.queued_commands:
        lines.append(f"  {shard.queued_commands} operator commands waiting for the learner")
    return lines


def render(status: Status) -> str:
    """The one-screen text of `headrace status`."""
    stamp = datetime.fromtimestamp(status.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        f"headrace status at {stamp} UTC, key prefix {status.prefix}",
        f"redis  {status.redis_url:<32} {'up' if status.redis_up else 'DOWN'}",
        f"kafka  {status.kafka_bootstrap:<32} {'up' if status.kafka_up else 'DOWN'}"
        f" (topic {status.topic})",
    ]
    for shard in status.shards:
        lines.extend(_shard_lines(shard))
    if status.redis_up:
        lines.append(f"alerts (latest {len(status.alerts)})" if status.alerts else "alerts none")
    for alert in status.alerts:
        at = datetime.fromtimestamp(float(alert["ts"]), UTC).strftime("%m-%d %H:%M:%S")
        lines.append(
            f"  {at} {alert['model']}/{alert['variant']} {alert['detector']}: {alert['message']}"
        )
    return "\n".join(lines)
