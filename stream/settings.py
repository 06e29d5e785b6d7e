"""Connection and topic settings shared by every headrace process.

Built by each composition root (CLI command, test fixture), never at import time.
"""

from typing import Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SENTINELS = 3
"""Sentinels of the local stack's Redis with failover: a majority of three agrees on a
failover, so one sentinel may die without stopping it."""


class StreamSettings(BaseSettings):
    """Where Kafka and Redis are, what the topics are called, where the local stack lives."""

    model_config = SettingsConfigDict(
        env_prefix="HEADRACE_", extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated (host:port)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding the model state, online features, leases and alerts. An ACL user and
    its password may be in it (redis://user:password@host:port/0); it is never printed."""

    redis_password: SecretStr | None = None
    """Password Redis requires (HEADRACE_REDIS_PASSWORD), unless the URL carries one. The
    local stack's Redis requires it too (`requirepass`)."""

    redis_sentinels: str = ""
    """Redis Sentinels, comma separated (host:port). Set, every client asks them where the
    primary of HEADRACE_REDIS_SENTINEL_SERVICE is (on each connect) and follows a failover;
    the URL's host and port are then unused (its database and user still apply). The
    sentinels take the same password as Redis."""

    redis_sentinel_service: str = "headrace"
    """The name the sentinels monitor the primary under (`sentinel monitor <name> ...`)."""

    stack_redis: Literal["single", "sentinel"] = "single"
    """What `headrace stack up` runs for Redis: `single` (one server) or `sentinel` (a
    primary on the URL's port, a replica on the next port and three sentinels on the three
    after it; HEADRACE_REDIS_SENTINELS then defaults to them)."""

    key_prefix: str = "headrace"
    """Prefix of every Redis key headrace writes; deployments (or tests) can share a Redis."""

    topic_events: str = "events"
    """The clickstream topic, keyed by user_id."""

    topic_dlq: str = "events.dlq"
    """Dead-letter topic: events that do not parse, with the reason."""

    topic_quarantine: str = "events.quarantine"
    """Events the fraud guard blocked, with the rule that blocked them."""

    events_max_message_bytes: int | None = Field(default=None, ge=1)
    """Largest record batch the events topic accepts; unset: the learner asks the broker."""

    side_max_message_bytes: int | None = Field(default=None, ge=1)
    """Largest record batch the dead-letter and quarantine topics accept; unset: the learner
    asks the broker. A copy larger than this is cut to fit."""

    shards: str = "main=*"
    """Model shards over the partitions of the events topic: `main=*`, or e.g. `a=0,1;b=2`."""

    partitions: int = Field(default=3, ge=1, le=1024)
    """Partition count used when the local stack creates the topics."""

    stack_dir: str = ".stack"
    """Folder of the local stack: Kafka jars, broker and Redis data, logs, pid files."""

    kafka_cache_dir: str = ".stack"
    """Where the Kafka jars and Maven's cache go; every local stack (demo, tests) shares them."""

    controller_port: int = Field(default=9093, ge=1, le=65535)
    """Port of the local broker's KRaft controller listener."""

    kafka_brokers: int = Field(default=1, ge=1, le=9)
    """Brokers of the local stack (`headrace stack up --brokers N`). With more than one,
    node i listens on the first bootstrap port + 2(i-1) and its controller on
    HEADRACE_CONTROLLER_PORT + 2(i-1), all of them voters of the KRaft quorum, and a
    one-address HEADRACE_KAFKA_BOOTSTRAP is widened to list every node."""

    kafka_heap: str = "512m"
    """Java heap (-Xmx) of the local broker."""

    @field_validator("redis_password", mode="before")
    @classmethod
    def _empty_password_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _local_cluster_addresses(self) -> Self:
        # Clients of a local multi-node stack must know every node, or the loss of the one
        # they were told about would leave them unable to find the others.
        if self.kafka_brokers > 1 and "," not in self.kafka_bootstrap:
            host, port = self.kafka_host_port
            self.kafka_bootstrap = ",".join(
                f"{host}:{port + 2 * i}" for i in range(self.kafka_brokers)
            )
        if self.stack_redis == "sentinel" and not self.redis_sentinels.strip():
            host, port = self.redis_host_port
            self.redis_sentinels = ",".join(f"{host}:{port + 2 + i}" for i in range(SENTINELS))
        return self

    @property
    def kafka_addresses(self) -> list[tuple[str, int]]:
        """Every bootstrap server, split."""
        out = []
        for item in self.kafka_bootstrap.split(","):
            host, _, port = item.strip().rpartition(":")
            out.append((host or "127.0.0.1", int(port)))
        return out

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Redis Sentinels to ask for the primary; empty: Redis is the URL's server."""
        out = []
        for item in self.redis_sentinels.split(","):
            if item.strip():
                host, _, port = item.strip().rpartition(":")
                out.append((host or "127.0.0.1", int(port)))
        return out

    @property
    def redis_password_value(self) -> str | None:
        """The password to authenticate with: the URL's own, else HEADRACE_REDIS_PASSWORD."""
        own = urlsplit(self.redis_url).password
        if own is not None:
            return own
        return self.redis_password.get_secret_value() if self.redis_password else None

    @property
    def redis_url_shown(self) -> str:
        """The Redis URL with any password in it masked: safe for logs and status."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        user = parts.username or ""
        netloc = f"{user}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        """The first bootstrap server, split, for the local broker to bind to."""
        first = self.kafka_bootstrap.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def redis_host_port(self) -> tuple[str, int]:
        """Host and port of the Redis URL, for the local Redis server to bind to."""
        parts = urlsplit(self.redis_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379

    @property
    def topics(self) -> tuple[str, str, str]:
        return (self.topic_events, self.topic_dlq, self.topic_quarantine)
