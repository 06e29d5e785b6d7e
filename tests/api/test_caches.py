"""The item and response caches on the real stack: exact answers, bounded staleness, and
never an answer of an older model version."""

import dataclasses
import time
import uuid
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.settings import ApiSettings
from headrace.sim.simulator import generate, world
from learner.features import FeatureConfig
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.api.helpers import direct_scores, request_body
from tests.api.test_predict import AT, published_model, shop_requests
from tests.learner.harness import InProcessLearner
from tests.support import wait_for

pytestmark = pytest.mark.integration

WORLD = world(SMALL)


def cache_count(client: TestClient, cache: str, result: str) -> float:
    line = f'headrace_api_cache_total{{cache="{cache}",result="{result}"}} '
    for sample in client.get("/metrics").text.splitlines():
        if sample.startswith(line):
            return float(sample.rsplit(" ", 1)[1])
    return 0.0


def scores_of(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    got: dict[str, Any] = response.json()
    return got


def test_cached_answers_are_the_models_own(
    settings: StreamSettings, redis_client: redis.Redis, learner: InProcessLearner
) -> None:
    """Both caches on, every answer (users with history, and new users asked twice) is
    still predict_proba_one on the features of the aggregates in Redis, to 1e-9."""
    model = published_model(redis_client, learner, "main")
    requests = shop_requests(10, k=25)
    api = ApiSettings(cache_max_age_s=60.0, item_cache=True, response_cache=True)
    with running_app(api, settings, clock=lambda: AT) as client:
        for _ in range(2):
            for request in requests:
                for user_id in (request.user_id, "nobody-" + request.user_id):
                    body = {**request_body(request), "user_id": user_id}
                    got = scores_of(client, body)
                    assert [s["item_id"] for s in got["scores"]] == [
                        c.item_id for c in request.candidates
                    ]
                    unknown = dataclasses.replace(request, user_id=user_id)
                    want = direct_scores(
                        redis_client, learner.keys, model, unknown, AT, FeatureConfig()
                    )
                    np.testing.assert_allclose(
                        [s["score"] for s in got["scores"]], want, rtol=0, atol=1e-9
                    )
        assert cache_count(client, "item", "hit") > 0
        # Every new user's second request at least (a simulator user without history
        # shares the new users' answers: the same context and candidates).
        assert cache_count(client, "response", "hit") >= len(requests)
        assert cache_count(client, "response", "miss") <= len(requests)


def test_no_answer_uses_item_aggregates_older_than_the_bound(
    settings: StreamSettings, redis_client: redis.Redis, learner: InProcessLearner
) -> None:
    """An item's aggregates change in Redis: every request sent more than
    cache_max_age_s after the change answers from the new ones."""
    bound = 1.0
    request = shop_requests(1, k=10)[0]
    body = request_body(request)
    item = request.candidates[0].item_id
    api = ApiSettings(item_cache=True, cache_max_age_s=bound)
    with running_app(api, settings, clock=lambda: AT) as client:
        before = scores_of(client, body)["scores"][0]["score"]
        # A best seller now: what the learner would write after many purchases.
        redis_client.hset(
            learner.keys.item(item), mapping={"t": AT, "imp": 500, "clk": 400, "pur": 300}
        )
        changed_at = time.monotonic()
        seen: list[tuple[float, float]] = []

        def past_the_bound() -> bool:
            sent = time.monotonic()
            seen.append((sent - changed_at, scores_of(client, body)["scores"][0]["score"]))
            return sent - changed_at > bound + 0.5

        wait_for(past_the_bound, "requests past the bound", timeout=60)
        late = [score for age, score in seen if age > bound]
        assert late, seen
        assert all(abs(score - before) > 1e-6 for score in late), seen
        assert cache_count(client, "item", "hit") > 0


def test_a_new_version_is_never_answered_from_the_old_versions_cache(
    settings: StreamSettings, learner: InProcessLearner
) -> None:
    """A new user's answer is cached under version 1; once version 2 is published, the
    answers name version 2 and carry its scores, never version 1's cached ones."""
    body = {**request_body(shop_requests(1, k=20)[0]), "user_id": f"new-{uuid.uuid4().hex}"}
    # Long enough that only the version could end the cached answer's life.
    api = ApiSettings(cache_max_age_s=300.0, item_cache=True, response_cache=True)
    with running_app(api, settings, clock=lambda: AT) as client:
        first = scores_of(client, body)
        again = scores_of(client, body)
        assert again["version"] == first["version"] == 1
        assert again["scores"] == [
            {**s, "impression_id": f"{again['request_id']}-{i}"}
            for i, s in enumerate(first["scores"])
        ]
        assert again["request_id"] != first["request_id"]
        assert cache_count(client, "response", "hit") == 1
        old = [s["score"] for s in first["scores"]]

        learner.process(generate(SMALL.model_copy(update={"seed": 99, "count": 2_000})))
        assert learner.publish() == 2
        answers: list[dict[str, Any]] = []

        def served_2() -> bool:
            answers.append(scores_of(client, body))
            return bool(answers[-1]["version"] == 2)

        wait_for(served_2, "version 2 to be served", timeout=30)
        for answer in answers:
            scores = [s["score"] for s in answer["scores"]]
            assert (scores == old) == (answer["version"] == 1), answer["version"]
        # The new version's answer is computed, then cached under version 2.
        newer = scores_of(client, body)
        assert newer["version"] == 2
        assert [s["score"] for s in newer["scores"]] == [s["score"] for s in answers[-1]["scores"]]
