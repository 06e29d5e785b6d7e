"""Asking Redis Sentinel where the primary is, from blocking and from asyncio clients."""

import asyncio

import pytest

from learner.redisconn import async_primary, async_sentinels, sentinel_kwargs, sentinel_master
from stream.settings import StreamSettings
from tests.support import free_port


def test_the_sentinels_are_asked_with_redis_password_and_a_short_timeout() -> None:
    assert sentinel_kwargs("pw", 2.0) == {
        "password": "pw",
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
    }
    sentinels = async_sentinels([("127.0.0.1", 1)], "pw", 0.5)
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
        asyncio.run(async_primary(async_sentinels(nobody, None, 0.5), "headrace"))
