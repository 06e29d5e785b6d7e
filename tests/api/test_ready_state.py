"""/ready follows the state that is really in Redis, not only whether Redis answers.

A running API process serves a published model; the test's keys are deleted (what a
FLUSHALL or a Redis that came back empty does to this deployment, without touching the
other tests' keys in the shared Redis): /ready turns 503 and says why, the body and the
metrics say degraded, /predict still answers from memory and says it is degraded. A
learner publishing again, at a version lower than the one served, brings it back.

A Redis that went back to an older state (it lost its last writes) is listed under
`rewound`, ready still: the replica serves the newer genuine model until the learner
publishes under a new epoch.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import redis

from api.settings import ApiSettings
from headrace.sim.simulator import generate, world
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.api.helpers import ApiProcess, api_env, metric, request_body
from tests.learner.harness import InProcessLearner
from tests.support import wait_for

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


@pytest.fixture
def served(
    settings: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[InProcessLearner, ApiProcess]]:
    learner = InProcessLearner(settings, redis_client)
    learner.process(generate(SMALL))
    learner.publish()
    assert learner.publish() == 2
    api = ApiProcess(api_env(settings, model_poll_s=0.2), tmp_path / "api.log")
    try:
        api.wait_listening()
        wait_for(lambda: httpx.get(f"{api.url}/ready").status_code == 200, "ready")
        yield learner, api
    finally:
        api.close()
        learner.close()


def test_ready_fails_while_the_state_is_gone_and_recovers_when_published_again(
    settings: StreamSettings,
    redis_client: redis.Redis,
    served: tuple[InProcessLearner, ApiProcess],
) -> None:
    learner, api = served
    body = orjson.dumps(request_body(world(SMALL).request_for(1, np.random.default_rng(1), k=5)))
    ready = httpx.get(f"{api.url}/ready").json()
    assert ready == {"ready": True, "degraded": False, "reasons": [], "models": {"main": 2}}
    answer = httpx.post(f"{api.url}/predict", content=body, headers=JSON).json()
    assert answer["degraded"] is False
    assert metric(api.url, "headrace_api_degraded") == 0.0

    # Only this test's keys: the Redis is shared with every other test.
    keys = list(redis_client.scan_iter(match=f"{settings.key_prefix}:*", count=1000))
    assert keys
    redis_client.delete(*keys)

    gone = wait_for(
        lambda: r if (r := httpx.get(f"{api.url}/ready")).status_code == 503 else None,
        "/ready to notice the state is gone",
    )
    ready = gone.json()
    assert ready["ready"] is False
    assert ready["degraded"] is True
    assert ready["models"] == {"main": 2}  # still served from memory
    assert any("state is gone from Redis" in reason for reason in ready["reasons"])
    answer = httpx.post(f"{api.url}/predict", content=body, headers=JSON)
    assert answer.status_code == 200
    assert answer.json()["version"] == 2
    assert answer.json()["degraded"] is True
    assert answer.headers["X-Headrace-Degraded"]
    assert metric(api.url, "headrace_api_degraded") == 1.0
    assert metric(api.url, 'headrace_api_state_missing{model="main"}') == 1.0
    assert metric(api.url, "headrace_api_ready") == 0.0

    # The lease went with the state: the learner takes the shard again, learns the topic
    # anew from its start and publishes, and the numbering starts over. The replica
    # follows it: it is the state that is there now.
    learner.take_over()
    assert learner.publish() == 1
    back = wait_for(
        lambda: r if (r := httpx.get(f"{api.url}/ready")).status_code == 200 else None,
        "/ready to recover",
    )
    assert back.json() == {"ready": True, "degraded": False, "reasons": [], "models": {"main": 1}}
    answer = httpx.post(f"{api.url}/predict", content=body, headers=JSON).json()
    assert (answer["version"], answer["degraded"]) == (1, False)
    assert metric(api.url, 'headrace_api_state_missing{model="main"}') == 0.0
    assert metric(api.url, "headrace_api_degraded") == 0.0


def test_ready_lists_a_shard_whose_state_in_redis_went_back_until_a_new_epoch(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    learner = InProcessLearner(settings, redis_client)
    records = list(generate(SMALL))
    learner.process(records[:4_000])
    learner.publish()
    older = redis_client.dump(learner.keys.state)
    learner.process(records[4_000:])
    assert learner.publish() == 2
    with running_app(ApiSettings(), settings) as client:
        served = client.get("/models").json()["models"][0]
        assert served["version"] == 2

        # Redis lost the last publish (its state hash is back at version 1).
        redis_client.restore(learner.keys.state, 0, older, replace=True)
        rewound = wait_for(lambda: client.get("/ready").json().get("rewound"), "rewound")
        assert rewound["main"].startswith(
            f"shard main: Redis holds epoch {served['epoch']} version 1"
        )
        assert client.get("/ready").status_code == 200  # still serving a genuine model
        assert client.get("/models").json()["models"][0]["version"] == 2

        # The learner taking the shard over numbers from what Redis holds, under a new
        # epoch, at once: version 2 again, and newer than the version 2 served.
        learner.take_over()
        assert learner.store.stamp().version == 2
        now = wait_for(
            lambda: (
                (m := client.get("/models").json()["models"][0])["epoch"] != served["epoch"] and m
            ),
            "the new epoch to be served",
        )
        assert now["version"] == 2 and now["epoch"] > served["epoch"]
        assert "rewound" not in client.get("/ready").json()
    learner.close()
