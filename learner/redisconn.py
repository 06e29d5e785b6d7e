"""Connecting to the deployment's Redis, authenticated, the same way in every process.

With HEADRACE_REDIS_SENTINELS set, the client is redis-py's Sentinel-managed one: each new
connection asks the sentinels where the primary is, and a connection that finds its server
demoted to a replica (READONLY) is dropped, so clients follow a failover by themselves.
The URL's host and port are then the sentinels' business; its user, database and scheme
(rediss: TLS) still say how to talk to the primary they name, for every client alike.
"""

from typing import Any

import redis
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from stream.settings import StreamSettings

FAILOVER_RETRY_S = 15.0
"""How long a Sentinel client keeps retrying a command by default: longer than a failover
(the sentinels' down-after time plus an election), so a learner rides one out."""


def connect(settings: StreamSettings, **options: Any) -> redis.Redis:
    """A client of HEADRACE_REDIS_URL (or of the primary the sentinels name), with
    HEADRACE_REDIS_PASSWORD unless the URL has one.

    `options` go to redis-py (timeouts, retries)."""
    password = settings.redis_password_value
    if settings.sentinel_addresses:
        options.setdefault("retry", _failover_retry())
        timeout = options.get("socket_connect_timeout") or 1.0
        sentinel = redis.sentinel.Sentinel(
            settings.sentinel_addresses,
            sentinel_kwargs=sentinel_kwargs(password, timeout),
            **primary_options(settings.redis_url, password),
        )
        client: redis.Redis = sentinel.master_for(settings.redis_sentinel_service, **options)
        return client
    # from_url lets the URL's own credentials win over keyword arguments.
    extra: dict[str, Any] = {"password": password} if password is not None else {}
    return redis.Redis.from_url(settings.redis_url, **extra, **options)


def _failover_retry() -> Retry:
    # Waits of 0.2, 0.4, 0.8, then 1 s between tries: about FAILOVER_RETRY_S in all. A
    # WATCHed transaction (the learner's publish) is not retried by redis-py: it fails
    # with WatchError, and the learner's fencing decides.
    return Retry(ExponentialBackoff(cap=1.0, base=0.1), int(FAILOVER_RETRY_S))


def primary_options(url: str, password: str | None) -> dict[str, Any]:
    """How a Sentinel-managed client talks to the primary: the URL's user, database and
    TLS (rediss), and `password` (the URL's own or HEADRACE_REDIS_PASSWORD)."""
    parts = redis.connection.parse_url(url)
    out: dict[str, Any] = {"password": password}
    if parts.get("username"):
        out["username"] = parts["username"]
    if parts.get("db"):
        out["db"] = int(parts["db"])
    if parts.get("connection_class") is redis.connection.SSLConnection:
        # redis-py's Sentinel pools take the flag, not a connection class: they pick
        # their own TLS connection, which asks the sentinels where to connect.
        out["ssl"] = True
    return out


def sentinel_kwargs(password: str | None, timeout_s: float) -> dict[str, Any]:
    """How every client talks to the sentinels themselves (not to the primary)."""
    # The sentinels require the same password; they answer at once or not at all.
    return {"password": password, "socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}


def sentinel_master(settings: StreamSettings, timeout: float = 1.0) -> tuple[str, int] | None:
    """Where the sentinels say the primary is now; None when none of them can say."""
    sentinel = redis.sentinel.Sentinel(
        settings.sentinel_addresses,
        sentinel_kwargs=sentinel_kwargs(settings.redis_password_value, timeout),
    )
    try:
        host, port = sentinel.discover_master(settings.redis_sentinel_service)
    except (redis.RedisError, OSError):
        return None
    finally:
        for client in sentinel.sentinels:
            client.close()
    return str(host), int(port)


def async_sentinels(
    addresses: list[tuple[str, int]], url: str, password: str | None, timeout_s: float
) -> redis.asyncio.sentinel.Sentinel:
    """The sentinels, for an asyncio client: `async_primary` says where the primary is now,
    `master_for` gives a client of it (as `connect`'s: `primary_options`)."""
    return redis.asyncio.sentinel.Sentinel(
        addresses,
        sentinel_kwargs=sentinel_kwargs(password, timeout_s),
        **primary_options(url, password),
    )


async def async_primary(sentinel: redis.asyncio.sentinel.Sentinel, service: str) -> tuple[str, int]:
    """Where the sentinels say the primary of `service` is now; OSError when none can say,
    as when a server cannot be reached."""
    try:
        host, port = await sentinel.discover_master(service)
    except redis.RedisError as exc:
        raise OSError(f"the sentinels name no primary: {exc}") from exc
    return str(host), int(port)
