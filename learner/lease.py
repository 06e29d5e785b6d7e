"""Ownership of a shard: a Redis lease whose generation is the fencing token.

Acquiring bumps the shard's generation, so every owner has a token no
earlier owner had; the state publish checks the token inside its
transaction (learner.state), which makes a stale owner unable to write.
"""

import os
import socket
import uuid

import redis

from learner.layout import ShardKeys

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  if string.sub(current, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return current
  end
  return false
end
local generation = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. '|' .. generation
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


_PAST_EXPIRY_S = 0.01
"""A standby tries this long after the holder's lease should have run out."""


def default_owner_id() -> str:
    """host:pid:random, unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """This process's claim on one shard."""

    def __init__(
        self,
        client: redis.Redis,
        keys: ShardKeys,
        ttl_ms: int,
        owner_id: str | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self.ttl_ms = ttl_ms
        self.owner_id = owner_id or default_owner_id()
        self.token: str | None = None
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def generation(self) -> int:
        return int(self.token.rsplit("|", 1)[1]) if self.token else 0

    def try_acquire(self) -> bool:
        """Take the lease if it is free (or already ours); True when we hold it."""
        token = self._acquire(
            keys=[self._keys.lease, self._keys.generation], args=[self.owner_id, self.ttl_ms]
        )
        self.token = token.decode() if token else None
        return self.token is not None

    def renew(self) -> bool:
        """Extend the lease; False when it was lost (expired and taken, or deleted)."""
        if self.token is None:
            return False
        if not self._renew(keys=[self._keys.lease], args=[self.token, self.ttl_ms]):
            self.token = None
            return False
        return True

    def release(self) -> None:
        """Give the lease up, so a standby takes over at once rather than after the TTL."""
        if self.token is not None:
            self._release(keys=[self._keys.lease], args=[self.token])
            self.token = None

    def next_try_s(self, most: float) -> float:
        """How long a standby waits before it tries again: until just after the holder's
        lease runs out, and at most `most` seconds (0.01 when nobody holds it).

        Trying on a fixed cadence would add up to one interval to every takeover; timed by
        the lease itself, a dead owner's shard is taken within the TTL of its last renewal.
        """
        left_ms = int(self._client.pttl(self._keys.lease))
        return min(most, max(0, left_ms) / 1000 + _PAST_EXPIRY_S)

    def holder(self) -> str | None:
        """Who holds the lease now (owner|generation), for status displays."""
        raw = self._client.get(self._keys.lease)
        return raw.decode() if raw is not None else None
