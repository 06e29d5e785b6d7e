"""/predict, /models and /metrics on real published models (the learner's core, no Kafka)."""

import itertools
import time
from typing import Any

import numpy as np
import pytest
import redis
from pydantic import SecretStr

from api.predictor import _impression_ids
from api.settings import ApiSettings
from api.traffic import ShardRouter, TrafficSplit
from headrace.sim.simulator import generate, world
from learner import modelcodec
from learner.features import FeatureConfig
from learner.metrics import RELIABILITY_EDGES
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.api.helpers import direct_scores, request_body
from tests.learner.harness import InProcessLearner
from tests.support import learner_seal, wait_for

pytestmark = pytest.mark.integration

AT = 1_767_229_200.0  # 2026-01-01T01:00Z: one hour into SMALL's stream
WORLD = world(SMALL)


def published_model(client: redis.Redis, learner: InProcessLearner, variant: str) -> Any:
    blob = client.hget(learner.keys.state, f"model:{variant}")
    assert blob is not None
    return modelcodec.loads(blob)


def shop_requests(n: int, k: int, seed: int = 1) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [WORLD.request_for(int(rng.integers(0, SMALL.n_users)), rng, k=k) for _ in range(n)]


@pytest.mark.parametrize("variant", ["main", "tree"])
def test_scores_are_the_models_own_in_candidate_order(
    settings: StreamSettings,
    redis_client: redis.Redis,
    learner: InProcessLearner,
    variant: str,
) -> None:
    """numpy (logistic) and River's loop (tree) both give predict_proba_one, to 1e-9."""
    model = published_model(redis_client, learner, variant)
    api = ApiSettings(traffic={variant: 1.0})
    with running_app(api, settings, clock=lambda: AT) as client:
        for request in shop_requests(30, k=25):
            response = client.post("/predict", json=request_body(request))
            assert response.status_code == 200, response.text
            got = response.json()
            assert (got["model"], got["variant"], got["version"]) == ("main", variant, 1)
            assert got["degraded"] is False
            assert [s["item_id"] for s in got["scores"]] == [c.item_id for c in request.candidates]
            want = direct_scores(redis_client, learner.keys, model, request, AT, FeatureConfig())
            np.testing.assert_allclose([s["score"] for s in got["scores"]], want, rtol=0, atol=1e-9)


def test_top_k_returns_the_best_first_with_their_impression_ids(client: Any) -> None:
    request = shop_requests(1, k=20)[0]
    everything = client.post("/predict", json=request_body(request)).json()["scores"]
    best = client.post("/predict", json=request_body(request, top_k=5)).json()["scores"]
    assert len(best) == 5
    scores = [s["score"] for s in best]
    assert scores == sorted(scores, reverse=True)
    ranked = sorted(everything, key=lambda s: -s["score"])[:5]
    assert [s["item_id"] for s in best] == [s["item_id"] for s in ranked]
    assert len({s["impression_id"] for s in best}) == 5


def test_each_impression_id_names_the_request_and_its_candidate(client: Any) -> None:
    request = shop_requests(1, k=20)[0]
    for top_k in (None, 5, 20):
        got = client.post("/predict", json=request_body(request, top_k=top_k)).json()
        indices = []
        for scored in got["scores"]:
            request_id, _, index = scored["impression_id"].rpartition("-")
            assert request_id == got["request_id"]
            assert request.candidates[int(index)].item_id == scored["item_id"]
            indices.append(int(index))
        if top_k is None:
            assert indices == list(range(20))


def test_impression_ids_past_the_made_suffixes() -> None:
    order = [1500, 3, 1200]
    assert _impression_ids("r", order, 1501) == ["r-1500", "r-3", "r-1200"]
    assert _impression_ids("q", None, 1300)[-2:] == ["q-1298", "q-1299"]


def test_a_top_k_beyond_the_candidates_returns_them_all_sorted(client: Any) -> None:
    request = shop_requests(1, k=3)[0]
    best = client.post("/predict", json=request_body(request, top_k=40)).json()["scores"]
    assert len(best) == 3
    assert [s["score"] for s in best] == sorted((s["score"] for s in best), reverse=True)


def test_traffic_split_routes_each_user_to_its_variant(
    settings: StreamSettings, learner: InProcessLearner
) -> None:
    shares = {"main": 0.5, "tree": 0.5}
    split = TrafficSplit(shares)
    with running_app(ApiSettings(traffic=shares), settings) as client:
        seen = set()
        for request in shop_requests(40, k=3):
            got = client.post("/predict", json=request_body(request)).json()
            assert got["variant"] == split.variant_for(request.user_id)
            again = client.post("/predict", json=request_body(request)).json()
            assert again["variant"] == got["variant"]
            seen.add(got["variant"])
        assert seen == {"main", "tree"}


def test_a_variant_the_shard_lacks_falls_back_to_its_first_and_is_counted(
    settings: StreamSettings, learner: InProcessLearner
) -> None:
    with running_app(ApiSettings(traffic={"ghost": 1.0}), settings) as client:
        got = client.post("/predict", json=request_body(shop_requests(1, k=3)[0])).json()
        assert got["variant"] == "main"
        metrics = client.get("/metrics").text
        assert 'headrace_api_variant_fallbacks_total{model="main",variant="ghost"} 1.0' in metrics


def test_the_shadow_variant_is_scored_and_counted_but_never_returned(
    settings: StreamSettings, learner: InProcessLearner
) -> None:
    with running_app(ApiSettings(shadow_variant="tree"), settings) as client:
        for request in shop_requests(5, k=10):
            got = client.post("/predict", json=request_body(request)).json()
            assert got["variant"] == "main"
        metrics = client.get("/metrics").text
    assert 'headrace_api_shadow_predictions_total{model="main",variant="tree"} 5.0' in metrics
    assert 'headrace_api_shadow_abs_diff_count{model="main",variant="tree"} 5.0' in metrics


def test_models_lists_every_variant_with_its_facts(client: Any) -> None:
    before = time.time()
    listing = client.get("/models").json()["models"]
    after = time.time()
    assert len(listing) == 1
    shard = listing[0]
    assert shard["model"] == "main" and shard["version"] == 1 and shard["status"] == "loaded"
    # Every record read, on the partitions Kafka's default partitioner gave their users.
    assert sum(shard["offsets"].values()) == SMALL.count
    assert set(shard["offsets"]) <= {"0", "1", "2"}
    # The age is the publish's, as of the request (the app's clock is the wall clock).
    assert 0 < shard["published_at"] <= before
    assert before - 1e-3 <= shard["published_at"] + shard["age_s"] <= after + 1e-3
    assert "lineage" in shard
    variants = {v["name"]: v for v in shard["variants"]}
    assert set(variants) == {"main", "tree"}
    assert variants["main"]["kind"] == "logreg" and variants["main"]["scorer"] == "numpy-linear"
    assert variants["main"]["n_learned"] > 1000
    assert variants["main"]["traffic_share"] == 1.0 and variants["tree"]["traffic_share"] == 0.0
    assert "roc_auc" in variants["main"]["metrics"]
    # Only what is served or shadowed is deserialized.
    assert variants["tree"]["loaded"] is False
    for variant in variants.values():
        metrics, table = variant["metrics"], variant["reliability"]
        assert [(row["lower"], row["upper"]) for row in table] == list(
            itertools.pairwise(RELIABILITY_EDGES)
        )
        assert sum(row["count"] for row in table) == metrics["n"] > 0
        assert sum(row["rolling_count"] for row in table) == metrics["rolling_n"] > 0
        filled = [row for row in table if row["count"]]
        assert all(row["lower"] <= row["mean_predicted"] <= row["upper"] for row in filled)
        assert all(0.0 <= row["observed_rate"] <= 1.0 for row in filled)
        assert all(row["observed_rate"] is None for row in table if not row["count"])
        positives = sum(row["observed_rate"] * row["count"] for row in filled)
        assert positives / metrics["n"] == pytest.approx(metrics["positive_rate"])


def test_metrics_cover_requests_models_and_redis(client: Any) -> None:
    client.post("/predict", json=request_body(shop_requests(1, k=7)[0]))
    text = client.get("/metrics").text
    for name in (
        'headrace_api_request_seconds_bucket{le="0.005",method="POST",route="/predict"}',
        'headrace_api_predictions_total{model="main",variant="main",version="1"}',
        'headrace_api_model_version{model="main"} 1.0',
        "headrace_api_model_age_seconds",
        'headrace_api_model_swaps_total{model="main"} 1.0',
        "headrace_api_redis_errors_total",
        "headrace_api_impressions_dropped_total",
        "headrace_api_ready 1.0",
        "headrace_api_redis_up 1.0",
    ):
        assert name in text, name


def test_a_new_version_is_served_soon_after_its_publish(
    settings: StreamSettings, learner: InProcessLearner
) -> None:
    request = request_body(shop_requests(1, k=5)[0])
    # The poll comes once a minute at most: whatever is served sooner, pub/sub brought.
    slow_poll = ApiSettings(model_poll_s=60)
    with running_app(slow_poll, settings) as client:
        assert client.post("/predict", json=request).json()["version"] == 1
        records = generate(SMALL.model_copy(update={"seed": 99, "count": 500}))
        learner.process(records)
        assert learner.publish() == 2
        versions: list[int] = []

        def served_2() -> bool:
            versions.append(client.post("/predict", json=request).json()["version"])
            return versions[-1] == 2

        wait_for(served_2, "version 2 to be served", timeout=30)
        assert versions == sorted(versions)


def test_before_any_model_predict_is_503_and_not_ready(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    with running_app(ApiSettings(), settings, wait_ready=False) as client:
        response = client.post("/predict", json=request_body(shop_requests(1, k=2)[0]))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "no_model"
        assert response.headers["retry-after"] == "1"
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert any("no model" in reason for reason in ready.json()["reasons"])
        assert client.get("/health").status_code == 200
        assert client.get("/models").json()["models"][0]["status"] == "no model loaded yet"


def test_api_keys_guard_predict_only(settings: StreamSettings, learner: InProcessLearner) -> None:
    key = "k3y-for-the-storefront-0001"
    body = request_body(shop_requests(1, k=2)[0])
    with running_app(
        ApiSettings(api_keys=[SecretStr(key), SecretStr("another-key-00000000000")]), settings
    ) as client:
        missing = client.post("/predict", json=body)
        assert missing.status_code == 401 and "www-authenticate" in missing.headers
        assert client.post("/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/predict", json=body, headers={"X-API-Key": key}).status_code == 200
        bearer = {"Authorization": f"Bearer {key}"}
        assert client.post("/predict", json=body, headers=bearer).status_code == 200
        assert client.get("/models").status_code == 200


def metric_seen(client: Any, line: str) -> None:
    """Wait until the API's /metrics carries `line`: the holder's poll has seen the version."""
    wait_for(lambda: line in client.get("/metrics").text, f"/metrics to show {line}")


def test_a_version_that_does_not_load_is_skipped_and_the_served_one_stays(
    settings: StreamSettings, redis_client: redis.Redis, learner: InProcessLearner
) -> None:
    body = request_body(shop_requests(1, k=3)[0])
    with running_app(ApiSettings(), settings) as client:
        assert client.post("/predict", json=body).json()["version"] == 1
        # A corrupt publish written around the learner: refused, its signature does not fit.
        redis_client.hset(learner.keys.state, mapping={"version": 2, "model:main": b"garbage"})
        metric_seen(client, 'headrace_api_model_unverified_total{model="main"} 1.0')
        assert client.post("/predict", json=body).json()["version"] == 1
        # A signed blob that does not deserialize (a learner's bug): skipped all the same.
        fields = {k.decode(): v for k, v in redis_client.hgetall(learner.keys.state).items()} | {
            "version": b"3",
            "model:main": b"garbage",
        }
        fields["sig"] = learner_seal().seal(learner.keys, 3, fields)
        redis_client.hset(learner.keys.state, mapping=fields)
        metric_seen(client, 'headrace_api_model_load_errors_total{model="main"} 1.0')
        assert client.post("/predict", json=body).json()["version"] == 1
        # Published around the learner's fence too, as the corrupt versions were: the
        # learner itself refuses to publish on top of a state it did not write.
        assert learner.lease.token is not None
        assert learner.store.publish(learner.lease.token, learner.learner.delta()).version == 4
        wait_for(
            lambda: client.post("/predict", json=body).json()["version"] == 4,
            "the next good version to be served",
        )


def test_users_are_answered_by_the_shard_that_learns_them(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    sharded = settings.model_copy(update={"shards": "a=0;b=1,2"})
    learners = [InProcessLearner(sharded, redis_client, shard=name) for name in ("a", "b")]
    with running_app(ApiSettings(), sharded, wait_ready=False) as client:
        assert client.get("/ready").status_code == 503
        for trained in learners:
            trained.process(generate(SMALL.model_copy(update={"count": 2_000})))
            trained.publish()
            trained.close()
        wait_for(lambda: client.get("/ready").status_code == 200, "both shards to be ready")
        router = ShardRouter("a=0;b=1,2", 3)
        answered = set()
        for request in shop_requests(30, k=2):
            got = client.post("/predict", json=request_body(request)).json()
            assert got["model"] == router.shard_for(request.user_id)
            answered.add(got["model"])
        assert answered == {"a", "b"}
        assert [m["model"] for m in client.get("/models").json()["models"]] == ["a", "b"]
