"""The cascade through the API on the real Redis: the logistic variant ranks every candidate,
the factorization machine re-scores the best few (or the few nearest the cut), and both
come from one published state.

The learner's own core learns SMALL's stream in steps and publishes a version after each;
right after every publish (while the app may still serve the previous version, or swap in
the middle of the requests) each response is checked against the models of the version
it names: the first stage's scores against that version's logistic model, the second
stage's against that version's factorization machine, each with River's own
predict_proba_one on the learner's features from the same aggregates.
"""

from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.cascade import cheap_order, merge
from api.cascadespec import EVERY_SHARD, CascadeSpec, check_shards
from api.settings import ApiSettings
from headrace.sim.simulator import generate, world
from learner import modelcodec
from learner.features import FeatureConfig
from learner.layout import read_meta
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.api.helpers import direct_scores, request_body
from tests.learner.harness import InProcessLearner
from tests.support import signing_key, wait_for

AT = 1_767_229_200.0  # 2026-01-01T01:00Z: one hour into SMALL's stream
TOP = 5
CASCADE = ApiSettings.model_validate({"cascade": {"first": "main", "then": "fm", "top": TOP}})
CUT, NEAR = 8, 6
UNCERTAIN = ApiSettings.model_validate(
    {"cascade": {"first": "main", "then": "fm", "top": CUT, "uncertain": NEAR}}
)


@pytest.fixture
def learner(settings: StreamSettings, redis_client: redis.Redis) -> Iterator[InProcessLearner]:
    trained = InProcessLearner(settings, redis_client, {"main": "logreg", "fm": "fm"})
    yield trained
    trained.close()


def models_of(client: redis.Redis, learner: InProcessLearner) -> dict[str, Any]:
    """The variants of the state just published, deserialized from Redis, and its
    store-wide table ("store_stats")."""
    blobs = {name: client.hget(learner.keys.state, f"model:{name}") for name in ("main", "fm")}
    models = {name: modelcodec.loads(blob) for name, blob in blobs.items() if blob is not None}
    return {**models, "store_stats": (read_meta(client, learner.keys) or {}).get("store_stats")}


@pytest.mark.integration
def test_both_stages_come_from_the_version_the_response_names(
    settings: StreamSettings, redis_client: redis.Redis, learner: InProcessLearner
) -> None:
    records = generate(SMALL)
    learner.process(islice(records, 4_000))
    first = learner.publish()
    published = {first: models_of(redis_client, learner)}
    store = world(SMALL)
    rng = np.random.default_rng(5)
    seen: set[int] = set()
    with running_app(CASCADE, settings, clock=lambda: AT) as client:
        for step in range(4):
            if step:
                # A new version, then requests at once: the app swaps it in meanwhile.
                learner.process(islice(records, 1_000))
                version = learner.publish()
                published[version] = models_of(redis_client, learner)
            for _ in range(6):
                request = store.request_for(int(rng.integers(0, SMALL.n_users)), rng, k=30)
                got = client.post("/predict", json=request_body(request)).json()
                version = got["version"]
                seen.add(version)
                assert got["cascade"] == {
                    "first": {"variant": "main", "epoch": got["epoch"], "version": version},
                    "then": {"variant": "fm", "epoch": got["epoch"], "version": version},
                    "top": TOP,
                }
                models = published[version]
                config = FeatureConfig()
                keys = learner.keys
                # The version answered may be older than the one just published: its
                # own store-wide table, not the newest.
                table = models["store_stats"]
                cheap = direct_scores(
                    redis_client, keys, models["main"], request, AT, config, table
                )
                rich = direct_scores(redis_client, keys, models["fm"], request, AT, config, table)
                # Without top_k the answer keeps the candidates' order.
                assert [s["item_id"] for s in got["scores"]] == [
                    c.item_id for c in request.candidates
                ]
                best = set(np.argsort(-np.asarray(cheap), kind="stable")[:TOP].tolist())
                for i, entry in enumerate(got["scores"]):
                    if i in best:
                        assert entry["stage"] == "then"
                        assert entry["score"] == pytest.approx(rich[i], abs=1e-9)
                    else:
                        assert entry["stage"] == "first"
                        assert entry["score"] == pytest.approx(cheap[i], abs=1e-9)
    assert len(published) == 4
    # The versions answered moved on with the publishes (the swap happened under load).
    assert len(seen) >= 2, seen


@pytest.mark.integration
def test_top_k_ranks_the_rescored_candidates_first(
    settings: StreamSettings, learner: InProcessLearner
) -> None:
    learner.process(generate(SMALL))
    learner.publish()
    store = world(SMALL)
    rng = np.random.default_rng(8)
    request = store.request_for(3, rng, k=40)
    with running_app(CASCADE, settings, clock=lambda: AT) as client:
        full = client.post("/predict", json=request_body(request)).json()["scores"]
        ranked = client.post("/predict", json=request_body(request, top_k=12)).json()["scores"]
    by_item = {s["item_id"]: s for s in full}
    assert [s["stage"] for s in ranked] == ["then"] * TOP + ["first"] * (12 - TOP)
    head, tail = ranked[:TOP], ranked[TOP:]
    assert [s["score"] for s in head] == sorted((s["score"] for s in head), reverse=True)
    assert [s["score"] for s in tail] == sorted((s["score"] for s in tail), reverse=True)
    assert all(by_item[s["item_id"]]["score"] == s["score"] for s in ranked)


@pytest.mark.integration
def test_the_uncertain_rule_re_scores_only_the_candidates_nearest_the_cut(
    settings: StreamSettings, redis_client: redis.Redis, learner: InProcessLearner
) -> None:
    learner.process(generate(SMALL))
    learner.publish()
    models = models_of(redis_client, learner)
    store = world(SMALL)
    rng = np.random.default_rng(11)
    requests = [store.request_for(int(rng.integers(0, SMALL.n_users)), rng, k=40) for _ in range(5)]
    config, keys = FeatureConfig(), learner.keys
    with running_app(UNCERTAIN, settings, clock=lambda: AT) as client:
        for request in requests:
            cheap = direct_scores(redis_client, keys, models["main"], request, AT, config)
            rich = direct_scores(redis_client, keys, models["fm"], request, AT, config)
            ranked = np.argsort(-np.asarray(cheap), kind="stable").tolist()
            # The cut after the 8th: the 3 above it and the 3 below are re-scored.
            above, span, below = ranked[:5], ranked[5:11], ranked[11:]
            full = client.post("/predict", json=request_body(request)).json()
            assert full["cascade"]["top"] == CUT
            assert full["cascade"]["uncertain"] == NEAR
            for i, entry in enumerate(full["scores"]):
                if i in span:
                    assert entry["stage"] == "then"
                    assert entry["score"] == pytest.approx(rich[i], abs=1e-9)
                else:
                    assert entry["stage"] == "first"
                    assert entry["score"] == pytest.approx(cheap[i], abs=1e-9)
            got = client.post("/predict", json=request_body(request, top_k=20)).json()["scores"]
            ids = [c.item_id for c in request.candidates]
            by_rich = sorted(span, key=lambda i: -rich[i])
            # The ones above the span keep their places; the span is re-ordered in place.
            assert [s["item_id"] for s in got] == [ids[i] for i in [*above, *by_rich, *below][:20]]
        assert stage_sum(client, "first", "main") == 2 * 40 * len(requests)
        assert stage_sum(client, "then", "fm") == 2 * NEAR * len(requests)
        assert stage_count(client, "then", "fm") == 2 * len(requests)


def stage_sum(client: TestClient, stage: str, variant: str) -> float:
    """Candidates the cascade's `stage` scored, from /metrics."""
    return metric_value(client, "headrace_api_cascade_candidates_sum", stage, variant)


def stage_count(client: TestClient, stage: str, variant: str) -> float:
    return metric_value(client, "headrace_api_cascade_candidates_count", stage, variant)


def metric_value(client: TestClient, name: str, stage: str, variant: str) -> float:
    line = f'{name}{{model="main",stage="{stage}",variant="{variant}"}} '
    for sample in client.get("/metrics").text.splitlines():
        if sample.startswith(line):
            return float(sample.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line} in /metrics")


def test_the_uncertain_span_straddles_the_cut() -> None:
    near = CascadeSpec(first="main", then="fm", top=10, uncertain=6)
    assert near.span(100) == (7, 13)
    assert near.span(11) == (7, 11)  # fewer candidates than the span reaches
    assert near.span(5) == (5, 5)  # every candidate above the span: none re-scored
    assert CascadeSpec(first="main", then="fm", top=10, uncertain=20).span(100) == (0, 20)
    assert CascadeSpec(first="main", then="fm", top=10).span(100) == (0, 10)
    assert CascadeSpec(first="main", then="fm", top=10).span(3) == (0, 3)


def test_merge_re_orders_the_span_in_place_and_keeps_the_rest() -> None:
    cheap = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
    ranked = cheap_order(cheap)
    assert ranked.tolist() == [1, 5, 3, 2, 4, 0]
    # Re-score cheap places 2 and 3 (candidates 3 and 2): the expensive model swaps them.
    got = merge(cheap, ranked, 2, np.array([0.2, 0.6]))
    assert got.order == [1, 5, 2, 3, 4, 0]
    assert got.rescored.tolist() == [False, False, True, True, False, False]
    assert got.scores.tolist() == [0.1, 0.9, 0.6, 0.2, 0.3, 0.8]


@pytest.mark.integration
def test_a_cascade_naming_a_variant_the_shard_lacks_is_refused_and_said(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    learner = InProcessLearner(settings, redis_client, {"main": "logreg"})
    try:
        learner.process(islice(generate(SMALL), 2_000))
        learner.publish()
        store = world(SMALL)
        request = store.request_for(1, np.random.default_rng(1), k=5)
        with running_app(CASCADE, settings, clock=lambda: AT, wait_ready=False) as client:
            wait_for(lambda: client.get("/models").json()["models"][0].get("version"), "a model")
            ready = client.get("/ready")
            assert ready.status_code == 503
            reason = "HEADRACE_CASCADE names variant 'fm', which the shard does not publish"
            assert any(reason in r for r in ready.json()["reasons"])
            answer = client.post("/predict", json=request_body(request))
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "cascade_unavailable"
    finally:
        learner.close()


def test_one_cascade_applies_to_every_shard_and_shards_can_have_their_own() -> None:
    one = ApiSettings.model_validate({"cascade": {"first": "main", "then": "fm", "top": 50}})
    assert one.cascade == {EVERY_SHARD: CascadeSpec(first="main", then="fm", top=50)}
    spec = {"first": "main", "then": "tree", "top": 20}
    each = ApiSettings.model_validate({"cascade": {"eu": spec}})
    assert each.cascade["eu"].then == "tree"


def test_cascade_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_CASCADE", '{"first": "main", "then": "fm", "top": 50}')
    assert ApiSettings().cascade[EVERY_SHARD].top == 50


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('{"first": "main", "then": "fm", "top": 0}', "greater than or equal to 1"),
        ('{"first": "main", "then": "fm", "top": "many"}', "valid integer"),
        ('{"first": "main", "then": "fm"}', "top"),
        ('{"first": "main", "then": "main", "top": 5}', "two different variants"),
        ('{"first": "main", "then": "fm", "top": 5, "band": 1}', "Extra inputs"),
        ('{"first": "main", "then": "fm", "top": 5, "uncertain": 1}', "greater than or equal to 2"),
        ('{"first": "main", "then": "fm", "top": 5, "uncertain": 11}', "at most 10"),
        ('{"first": "main", "then": "fm", "top": 5, "uncertain": "x"}', "valid integer"),
        ('{"first": "", "then": "fm", "top": 5}', "at least 1 character"),
        ("not json", "cascade"),
    ],
)
def test_a_bad_cascade_is_a_clear_error_at_startup(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("HEADRACE_CASCADE", value)
    with pytest.raises(ValueError, match=says):  # pydantic's ValidationError is one
        ApiSettings()


def test_a_cascade_for_a_shard_that_does_not_exist_stops_the_app() -> None:
    spec = CascadeSpec(first="main", then="fm", top=5)
    check_shards({EVERY_SHARD: spec, "main": spec}, ["main"])
    with pytest.raises(ValueError, match="names shard"):
        check_shards({"mian": spec}, ["main"])
    stream = StreamSettings(shards="main=*")
    settings = ApiSettings(cascade={"mian": spec})
    with pytest.raises(ValueError, match=r"shard\(s\) mian, which HEADRACE_SHARDS"):
        create_app(settings, stream, verify_keys=(signing_key().public,))
