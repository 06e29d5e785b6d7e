"""Operator commands for a shard's owning learner: take a snapshot, restore, roll back.

Commands are JSON entries of a Redis list the active learner pops between
polls; each result is written under the command's id for the caller to
wait on. When no learner owns the shard, the caller acts itself, under the
shard's lease (see api/ and the CLI).
"""

import time
import uuid
from typing import Any

import orjson
import redis

from learner.layout import ShardKeys

RESULT_TTL_S = 3600


def send(client: redis.Redis, keys: ShardKeys, op: str, **args: Any) -> str:
    """Queue a command for the owning learner; returns its id."""
    command_id = uuid.uuid4().hex
    client.rpush(keys.control, orjson.dumps({"id": command_id, "op": op, **args}))
    return command_id


def next_command(client: redis.Redis, keys: ShardKeys) -> dict[str, Any] | None:
    raw = client.lpop(keys.control)
    if raw is None:
        return None
    command: dict[str, Any] = orjson.loads(raw)
    return command


def put_result(
    client: redis.Redis, keys: ShardKeys, command_id: str, result: dict[str, Any]
) -> None:
    client.set(keys.control_result(command_id), orjson.dumps(result), ex=RESULT_TTL_S)


def wait_result(
    client: redis.Redis, keys: ShardKeys, command_id: str, timeout_s: float
) -> dict[str, Any] | None:
    """The command's result, or None if the learner has not answered within the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        raw = client.get(keys.control_result(command_id))
        if raw is not None:
            result: dict[str, Any] = orjson.loads(raw)
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def withdraw(client: redis.Redis, keys: ShardKeys, command_id: str) -> bool:
    """Take back a command no learner picked up (so the caller may act itself)."""
    for raw in client.lrange(keys.control, 0, -1):
        if orjson.loads(raw).get("id") == command_id:
            return bool(client.lrem(keys.control, 1, raw))
    return False
