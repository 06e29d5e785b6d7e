"""The OpenAPI document describes the body /predict really decodes, and a property-based
run of schemathesis over that document (valid and invalid requests) finds no 5xx.
"""

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Err

from api.app import create_app
from api.settings import ApiSettings
from stream.settings import StreamSettings
from tests.api.conftest import CLIENT_API

pytestmark = pytest.mark.integration


def test_the_document_describes_the_msgspec_request_and_response() -> None:
    app = create_app(ApiSettings(max_candidates=321), StreamSettings())
    doc = app.openapi()
    operation = doc["paths"]["/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    schemas = doc["components"]["schemas"]
    request = schemas["PredictRequest"]
    assert request["required"] == ["user_id", "candidates"]
    assert request["additionalProperties"] is False
    assert request["properties"]["candidates"]["maxItems"] == 321
    assert request["properties"]["candidates"]["minItems"] == 1
    candidate = schemas["Candidate"]
    assert candidate["properties"]["price"] == {"type": "number", "minimum": 0, "maximum": 1e6}
    assert candidate["properties"]["item_id"]["maxLength"] == 128
    assert schemas["Context"]["properties"]["query"]["maxLength"] == 256
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/PredictResponse"}
    for status in ("401", "413", "415", "422", "503"):
        assert status in operation["responses"]


# The document of an app built like the `client` fixture's (building one connects nowhere).
# The live alert stream never ends (a property run would hang on it), and the admin routes
# are covered case by case in test_admin.py (they need a token and a learner).
schema = schemathesis.openapi.from_dict(create_app(CLIENT_API, StreamSettings()).openapi()).exclude(
    path_regex="^/(admin|drift/alerts/stream)"
)

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
"""Not positive_data_acceptance: JSON Schema counts 3.0 as an integer, the event contract
(and so the API) wants integers written as integers."""


# One test per operation, each with its own node id. (schemathesis's own `parametrize`
# gives its items one node id between them, and pytest-xdist, which scripts/test runs the
# suite on, runs one item per node id.)
def _operations() -> list[Any]:
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


OPERATIONS = _operations()


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_generated_request_makes_a_server_error(operation: Any, client: TestClient) -> None:
    # Valid requests and invalid ones, as schemathesis's own runs draw them.
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def answers_without_a_server_error(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        # schemathesis speaks `requests`; the in-process TestClient speaks httpx.
        response = client.request(
            kwargs["method"],
            kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            json=kwargs.get("json"),
            content=kwargs.get("data"),
        )
        case.validate_response(response, checks=CHECKS)

    answers_without_a_server_error()
