"""Asking Redis Sentinel where the primary is, from blocking and from asyncio clients."""

import asyncio

import pytest
import redis.asyncio.sentinel
import redis.sentinel
from pydantic import SecretStr

from learner.redisconn import (
    async_primary,
    async_sentinels,
    connect,
    primary_options,
    sentinel_kwargs,
    sentinel_master,
)
from stream.settings import StreamSettings
from tests.support import free_port


def test_the_sentinels_are_asked_with_redis_password_and_a_short_timeout() -> None:
    assert sentinel_kwargs("pw", 2.0) == {
        "password": "pw",
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
    }
    sentinels = async_sentinels([("127.0.0.1", 1)], "redis://127.0.0.1:6379/0", "pw", 0.5)
    # The sentinels and the primary they name take the same password.
    assert sentinels.sentinel_kwargs == sentinel_kwargs("pw", 0.5)
    assert sentinels.connection_kwargs["password"] == "pw"


def test_no_sentinel_answering_is_no_primary_for_either_client() -> None:
    nobody = [("127.0.0.1", free_port())]
    settings = StreamSettings(
        redis_sentinels=",".join(f"{h}:{p}" for h, p in nobody), redis_password=None
    )
    assert sentinel_master(settings, timeout=0.5) is None
    # An OSError, as when the primary itself cannot be reached: the API's pipeline
    # reports both as Redis being unavailable.
    with pytest.raises(OSError, match="the sentinels name no primary"):
        asyncio.run(
            async_primary(async_sentinels(nobody, settings.redis_url, None, 0.5), "headrace")
        )


def test_the_primary_is_reached_with_the_urls_user_database_and_tls() -> None:
    url = "rediss://alice@10.0.0.1:26379/3"
    assert primary_options(url, "pw") == {
        "password": "pw",
        "username": "alice",
        "db": 3,
        "ssl": True,
    }
    assert primary_options("redis://127.0.0.1:6379/0", None) == {"password": None}


def test_every_sentinel_client_talks_to_the_primary_alike() -> None:
    # The blocking client (learner, API state), the asyncio one (alert feed) and the
    # API's pipeline all took the password only, or dropped the URL's user and TLS.
    settings = StreamSettings(
        redis_url="rediss://alice@127.0.0.1:1/3",
        redis_password=SecretStr("pw"),
        redis_sentinels="127.0.0.1:1",
    )
    blocking = connect(settings, socket_connect_timeout=0.5)
    pool = blocking.connection_pool
    assert pool.connection_class is redis.sentinel.SentinelManagedSSLConnection
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["db"]) == ("alice", 3)
    assert pool.connection_kwargs["password"] == "pw"
    sentinels = async_sentinels(settings.sentinel_addresses, settings.redis_url, "pw", 0.5)
    primary = sentinels.master_for("headrace")
    apool = primary.connection_pool
    assert apool.connection_class is redis.asyncio.sentinel.SentinelManagedSSLConnection
    assert (apool.connection_kwargs["username"], apool.connection_kwargs["db"]) == ("alice", 3)
