"""When a standby tries for the lease again (learner/lease.py), on the test Redis."""

import pytest
import redis

from learner.layout import ShardKeys
from learner.lease import Lease
from stream.settings import StreamSettings

pytestmark = pytest.mark.integration


def test_a_standby_tries_again_just_after_the_holders_lease_runs_out(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    keys = ShardKeys(settings.key_prefix, "main")
    standby = Lease(redis_client, keys, 3_000, "standby")
    # Nobody holds it: at once.
    assert standby.next_try_s(1.0) == pytest.approx(0.01)
    # Held for a while yet: the usual interval.
    owner = Lease(redis_client, keys, 60_000, "owner")
    assert owner.try_acquire()
    assert standby.next_try_s(1.0) == 1.0
    # Held by an owner that stopped renewing: right after its lease runs out, sooner than
    # the usual interval (here a minute; the lease has 30 s left).
    assert redis_client.pexpire(keys.lease, 30_000)
    assert 20 < standby.next_try_s(60.0) <= 30.01
