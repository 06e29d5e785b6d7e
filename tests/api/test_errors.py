"""Every bad request is a 4xx with a message naming what is wrong; never a 5xx or a trace.

The `client` fixture's app takes at most 50 candidates and 64 KiB bodies.
"""

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

GOOD_CANDIDATE = {"item_id": "i00001", "price": 9.5, "category": "merino"}


def good(**overrides: Any) -> dict[str, Any]:
    return {"user_id": "u00001", "candidates": [GOOD_CANDIDATE], **overrides}


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    if field is not None:
        assert error["field"] == field


def test_the_good_request_passes(client: Any) -> None:
    assert client.post("/predict", json=good()).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b"", b'{"user_id": "u", }', b"\xff\xfe\x00", b"[1, 2]"],
)
def test_malformed_json(client: Any, raw: bytes) -> None:
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] in ("invalid_json", "invalid_request")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (good(user_id=12), "$.user_id"),
        (good(candidates="all of them"), "$.candidates"),
        (good(candidates=[{**GOOD_CANDIDATE, "price": "cheap"}]), "$.candidates[0].price"),
        (
            good(candidates=[GOOD_CANDIDATE, {**GOOD_CANDIDATE, "price": None}]),
            "$.candidates[1].price",
        ),
        (good(context={"position": "top"}), "$.context.position"),
        (good(top_k="3"), "$.top_k"),
        (good(publish_impressions="yes"), "$.publish_impressions"),
    ],
)
def test_wrong_types_name_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    assert_error(client.post("/predict", json=body), 422, "invalid_request", field)


def test_empty_and_oversize_candidate_lists(client: Any) -> None:
    assert_error(
        client.post("/predict", json=good(candidates=[])), 422, "invalid_request", "$.candidates"
    )
    too_many = good(candidates=[GOOD_CANDIDATE] * 51)
    response = client.post("/predict", json=too_many)
    assert_error(response, 422, "invalid_request", "$.candidates")
    assert "50" in response.json()["error"]["message"]
    assert client.post("/predict", json=good(candidates=[GOOD_CANDIDATE] * 50)).status_code == 200


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_are_refused(client: Any, token: bytes) -> None:
    raw = b'{"user_id": "u", "candidates": [{"item_id": "i", "price": %b, "category": "c"}]}'
    response = client.post(
        "/predict", content=raw % token, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "Traceback" not in response.text


def test_unknown_fields_are_refused(client: Any) -> None:
    response = client.post("/predict", json=good(debug=True))
    assert_error(response, 422, "invalid_request", "$")
    assert "debug" in response.json()["error"]["message"]
    nested = good(candidates=[{**GOOD_CANDIDATE, "colour": "red"}])
    assert_error(client.post("/predict", json=nested), 422, "invalid_request", "$.candidates[0]")


def test_oversize_strings_are_refused(client: Any) -> None:
    body = good(candidates=[{**GOOD_CANDIDATE, "category": "c" * 65}])
    assert_error(
        client.post("/predict", json=body), 422, "invalid_request", "$.candidates[0].category"
    )


def test_a_body_over_the_limit_is_413_from_its_content_length(client: Any) -> None:
    raw = orjson.dumps(good(context={"query": "q" * 200})) + b" " * 70_000
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 413, "body_too_large")


def test_a_chunked_body_over_the_limit_is_413_while_it_streams(client: Any) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 4096

    response = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "body_too_large")


def test_a_lying_content_length_does_not_get_past_the_limit(client: Any) -> None:
    raw = b" " * 70_000
    headers = {"content-type": "application/json", "content-length": "10"}
    response = client.post("/predict", content=raw, headers=headers)
    assert response.status_code in (400, 413, 422)
    assert response.status_code < 500


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        # What a browser's cross-site form or no-cors fetch can send: none says JSON...
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        # ... though its parameters may: the media type is what counts.
        "text/plain; charset=json",
        "text/json",
        None,
    ],
)
def test_a_body_that_is_not_declared_as_json_is_415(client: Any, content_type: str | None) -> None:
    body = orjson.dumps(good())
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post("/predict", content=body, headers=headers)
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/vnd.shop+json"],
)
def test_json_media_types_are_accepted(client: Any, content_type: str) -> None:
    response = client.post(
        "/predict", content=orjson.dumps(good()), headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text


def test_unknown_methods_are_one_metrics_label(client: Any) -> None:
    for method in ("PROPFIND", "BREW", "X-" + "A" * 40):
        assert_error(client.request(method, "/predict"), 405, "method_not_allowed")
    metrics = client.get("/metrics").text
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(metrics)
        if family.name == "headrace_api_responses"
        for sample in family.samples
    }
    assert "other" in methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_unknown_routes_and_methods_answer_in_the_same_shape(client: Any) -> None:
    assert_error(client.get("/predict"), 405, "method_not_allowed")
    assert_error(client.get("/nowhere"), 404, "not_found")
