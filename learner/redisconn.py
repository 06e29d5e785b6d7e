"""Connecting to the deployment's Redis, authenticated, the same way in every process."""

from typing import Any

import redis

from stream.settings import StreamSettings


def connect(settings: StreamSettings, **options: Any) -> redis.Redis:
    """A client of HEADRACE_REDIS_URL, with HEADRACE_REDIS_PASSWORD unless the URL has one.

    `options` go to redis-py (timeouts, retries)."""
    password = settings.redis_password_value
    # from_url lets the URL's own credentials win over keyword arguments.
    extra: dict[str, Any] = {"password": password} if password is not None else {}
    return redis.Redis.from_url(settings.redis_url, **extra, **options)
