"""POST /predict's fast path (api/fastpath.py) answers as the FastAPI route does.

Every request is sent twice to the same app: once through the fast path, once with it
switched off, so through Starlette's middleware, router and the route. Status, error code,
field, message, the headers a caller reads and the scores must be the same; the metrics
count both alike.
"""

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from api.fastpath import HeadraceApp
from api.settings import ApiSettings
from stream.settings import StreamSettings
from tests.api.conftest import CLIENT_API, running_app

pytestmark = pytest.mark.integration

CANDIDATE = {"item_id": "i00001", "price": 9.5, "category": "merino"}
GOOD = {"user_id": "u00001", "candidates": [CANDIDATE, {**CANDIDATE, "item_id": "i00002"}]}
JSON = {"content-type": "application/json"}
KEY = "k3y-for-the-fast-path-test"


def both(client: TestClient, **request: Any) -> tuple[httpx.Response, httpx.Response]:
    """The answer of the fast path, then the route's, to the same request."""
    app = client.app
    assert isinstance(app, HeadraceApp) and app.fast_predict is not None
    fast = client.post("/predict", **request)
    saved, app.fast_predict = app.fast_predict, None
    try:
        routed = client.post("/predict", **request)
    finally:
        app.fast_predict = saved
    return fast, routed


def same(fast: httpx.Response, routed: httpx.Response) -> dict[str, Any]:
    assert fast.status_code == routed.status_code, (fast.text, routed.text)
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    for header in ("www-authenticate", "retry-after", "x-headrace-degraded"):
        assert fast.headers.get(header) == routed.headers.get(header), header
    got, want = fast.json(), routed.json()
    if fast.status_code == 200:
        assert fast.headers["x-request-id"] == got["request_id"]
        for answer in (got, want):
            del answer["request_id"]
            for entry in answer["scores"]:
                del entry["impression_id"]
        # Computed a moment apart: the aggregates' time decay moves a score by ~1e-9.
        for a, b in zip(got.pop("scores"), want.pop("scores"), strict=True):
            assert a["item_id"] == b["item_id"]
            assert a["score"] == pytest.approx(b["score"], abs=1e-6)
    assert got == want
    result: dict[str, Any] = got
    return result


@pytest.fixture(scope="module")
def keyed(client: TestClient, shared_settings: StreamSettings) -> Iterator[TestClient]:
    """A second app over the `client` fixture's model, with API keys."""
    settings = ApiSettings(
        max_candidates=CLIENT_API.max_candidates,
        max_body_bytes=CLIENT_API.max_body_bytes,
        api_keys=[SecretStr(KEY)],
    )
    with running_app(settings, shared_settings) as c:
        yield c


def test_a_good_request(client: TestClient) -> None:
    answer = same(*both(client, json=GOOD))
    assert (answer["model"], answer["variant"], answer["degraded"]) == ("main", "main", False)


def test_top_k_ranks_alike(client: TestClient) -> None:
    same(*both(client, json={**GOOD, "top_k": 1}))


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"content": orjson.dumps(GOOD)}, 415, "unsupported_media_type"),
        ({"content": orjson.dumps(GOOD), "headers": {"content-type": "text/plain"}}, 415, None),
        ({"content": b"{", "headers": JSON}, 422, "invalid_json"),
        ({"json": {**GOOD, "user_id": 7}}, 422, "invalid_request"),
        ({"json": {**GOOD, "candidates": [CANDIDATE] * 51}}, 422, "invalid_request"),
        ({"json": {**GOOD, "publish_impressions": True}}, 403, "forbidden"),
        ({"content": b" " * (65 * 1024), "headers": JSON}, 413, "body_too_large"),
    ],
)
def test_errors_are_the_routes(
    client: TestClient, request_kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    fast, routed = both(client, **request_kwargs)
    error = same(fast, routed)["error"]
    assert fast.status_code == status
    assert code is None or error["code"] == code


def test_a_chunked_body_over_the_limit_is_cut_off(client: TestClient) -> None:
    """No Content-Length to refuse up front: the body is counted as it arrives."""

    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b" " * 1024

    fast = client.post("/predict", content=chunks(), headers=JSON)
    assert fast.status_code == 413
    assert fast.json()["error"]["code"] == "body_too_large"


def test_keys_are_checked_alike(keyed: TestClient) -> None:
    same(*both(keyed, json=GOOD, headers={"x-api-key": "not-the-key-at-all-1234"}))
    missing = same(*both(keyed, json=GOOD))
    assert missing["error"]["code"] == "unauthorized"
    answer = same(
        *both(keyed, json={**GOOD, "publish_impressions": False}, headers={"x-api-key": KEY})
    )
    assert answer["model"] == "main"
    bearer = {"authorization": f"Bearer {KEY}"}
    same(*both(keyed, json=GOOD, headers=bearer))


def test_other_methods_and_paths_are_fastapis(client: TestClient) -> None:
    assert client.get("/predict").status_code == 405
    # FastAPI's redirect to the route's own path, as before the fast path.
    assert client.post("/predict/", json=GOOD, follow_redirects=False).status_code == 307
    assert client.get("/health").status_code == 200


def counted(client: TestClient) -> dict[str, float]:
    """The /predict POST series of the request counter and the latency histogram."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("route") == "/predict" and labels.get("method") == "POST":
                if sample.name == "headrace_api_responses_total":
                    found[f"status {labels['status']}"] = sample.value
                elif sample.name == "headrace_api_request_seconds_count":
                    found["timed"] = sample.value
    return found


def test_the_metrics_count_both_alike(client: TestClient) -> None:
    before = counted(client)
    both(client, json=GOOD)
    both(client, content=orjson.dumps(GOOD))
    after = counted(client)
    grew = {name: after[name] - before.get(name, 0.0) for name in after}
    assert grew["timed"] == 4
    assert grew["status 200"] == 2
    assert grew["status 415"] == 2
