"""Settings of the learner process (`headrace learn`)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from learner.feedback import Method


class LearnerSettings(BaseSettings):
    """How the learner joins labels, which models it trains, how often it publishes."""

    model_config = SettingsConfigDict(env_prefix="HEADRACE_", extra="ignore")

    shard: str = "main"
    """Which shard of HEADRACE_SHARDS this learner serves (its model's name)."""

    variants: dict[str, str] = {"main": "logreg"}
    """Variant name → model kind (logreg, tree, fm, or a model function module:function),
    as JSON: '{"a": "logreg", "b": "tree"}'."""

    target: Literal["purchase", "click"] = "purchase"
    """The outcome that makes an impression a positive example."""

    join_window_s: float = Field(default=1800.0, gt=0)
    """Attribution window in event time: an impression with no outcome by then is a negative."""

    delayed_feedback: Method = "fnw"
    """How labels that arrive late are learned (docs/learner.md compares them): "fnw"
    learns a weighted fake negative at once and the purchase when it comes (Ktena et al.,
    RecSys 2019); "esdfm" learns each impression `elapsed_s` after it with the label known
    then, and a later purchase when it comes (Yang et al., AAAI 2021); "window" learns
    each impression when its window closes."""

    elapsed_s: float = Field(default=300.0, gt=0)
    """With "esdfm": the event time after an impression at which it is learned with the
    label known by then. Longer: more real labels, fewer fake negatives, a model that
    lags more. At or above join_window_s it learns at the close, as "window" does."""

    guard_delay_s: float = Field(default=300.0, gt=0)
    """The drift and rollback guards judge each impression's served prediction against the
    label known this long (event time) after it, instead of waiting for the attribution
    window: a drift shows minutes after it starts. Purchases that come later are missed
    alike before and after a drift, so the comparison stays fair. At or above
    join_window_s, the guards wait for the close like the metrics."""

    served_average: int = Field(default=2_000, ge=0)
    """A logistic variant serves the average of its weights over about this many learned
    examples (an exponential average), not its latest weights: the latest ones wander, and
    with them the level of every prediction by 10 to 15 % (docs/learner.md, "Learning
    quality"). It learns with its latest weights all the same. 0: serve the latest weights."""

    watermark_idle_s: float = Field(default=60.0, gt=0)
    """A partition read to its end holds the join's event-time watermark at most this far
    behind the newest partition, so a quiet partition does not stall the others."""

    max_pending: int = Field(default=100_000, ge=1)
    """Most impressions awaiting their outcome; past it the oldest close as negatives."""

    dedup_capacity: int = Field(default=200_000, ge=1)
    """How many recent event ids are remembered to learn a replayed duplicate once."""

    half_life_s: float = Field(default=86_400.0, gt=0)
    """Half-life, in event time, of the decayed per-user and per-item aggregates (and of
    the store-wide counts of which categories each query's pages show)."""

    store_queries: int = Field(default=200, ge=1)
    """The most frequent queries whose pages' categories the learner counts (between two
    prunes up to twice as many); a query outside them gets no `query_cat_share`. Each one
    adds about 0.25 KB (at eight categories) to every published version's meta."""

    metrics_window: int = Field(default=10_000, ge=10)
    """Examples in the rolling window of the progressive metrics. At a 5 % purchase rate
    10,000 hold about 500 purchases: the window's AUC is then good to about 0.01."""

    publish_every_events: int = Field(default=5_000, ge=1)
    """Publish the state after this many records at the latest ..."""

    publish_every_ms: int = Field(default=250, ge=1)
    """... or after this many milliseconds, whichever comes first."""

    lease_ttl_ms: int = Field(default=3_000, ge=500)
    """Ownership lease of the shard; a standby takes over this long after the owner stops."""

    group_id: str = "headrace-learner"
    """Kafka consumer group the learner commits its offsets to (for lag tools only)."""

    poll_max_records: int = Field(default=2_000, ge=1)
    """Records fetched per poll: one Redis round trip prefetches their aggregates."""

    metrics_port: int = Field(default=9101, ge=0, le=65535)
    """Port of the learner's Prometheus endpoint (0: off). One per learner on a host: a
    learner whose port is taken stops at start with an error naming this setting."""

    metrics_host: str = "127.0.0.1"
    """Address the Prometheus endpoint binds to (0.0.0.0 in a container)."""

    history_every_ms: int = Field(default=1_000, ge=0)
    """Least time between two points of the metrics history (the dashboard's charts); a
    point rides on a publish, so publish_every_ms also bounds how often they come. 0: a
    point with every publish."""

    history_max_points: int = Field(default=20_000, ge=100)
    """Points the metrics history keeps per shard (about); older ones are dropped. At one a
    second, 20,000 points are five and a half hours."""
