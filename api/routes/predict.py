"""POST /predict: the body is read (size-capped) and decoded by msgspec, not by FastAPI.

FastAPI sees no body parameter, so it neither parses nor validates the body; the OpenAPI
document still describes it, from the msgspec types (`openapi_extra`).
"""

from typing import Any

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.responses import Response

from api.deps import Services, ServicesDep, authorize, read_body, require_json
from api.errors import ForbiddenError
from api.predictor import Prediction
from api.schemas import schema_ref


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema_ref("ErrorResponse")}},
    }


router = APIRouter(tags=["predict"])


@router.post(
    "/predict",
    summary="Score candidate items for a user",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema_ref("PredictRequest")}},
        }
    },
    responses={
        200: {
            "description": "Scores in candidate order, or the best top_k first",
            "content": {"application/json": {"schema": schema_ref("PredictResponse")}},
        },
        401: _error("No API key, or a wrong one (when keys are configured)"),
        403: _error("publish_impressions asked for without an API key"),
        413: _error("The body exceeds the configured byte limit"),
        415: _error("The body is not declared as JSON"),
        422: _error("The body is not valid JSON, or does not fit the schema (see field)"),
        503: _error("No model has been published for the user's shard yet"),
    },
)
async def predict(request: Request, services: ServicesDep) -> Response:
    # Served by api.fastpath before FastAPI sees it (this route documents it, and answers
    # where the fast path steps aside: an app mounted under a root path).
    # A plain call, not a second dependency: FastAPI's resolution costs more than the check.
    authenticated = admit(request.headers, services)
    body = await read_body(request, services.settings.max_body_bytes)
    prediction = await answer(services, body, authenticated)
    after = prediction.after
    return Response(
        prediction.body,
        media_type="application/json",
        headers=dict(response_headers(prediction)),
        background=BackgroundTask(after) if after is not None else None,
    )


def admit(headers: Headers, services: Services) -> bool:
    """The checks made before the body is read: the API key (True when one was proved) and
    the declared media type."""
    authenticated = authorize(headers, services)
    require_json(headers)
    return authenticated


async def answer(services: Services, body: bytes, authenticated: bool) -> Prediction:
    """Decode the body and predict."""
    decoded = services.decoder.decode(body)
    if decoded.publish_impressions and not (authenticated or services.settings.publish_impressions):
        # Impressions become training data: an anonymous caller must not write it.
        raise ForbiddenError(
            "publish_impressions needs an API key (HEADRACE_API_KEYS); "
            "or the server publishes them for every request (HEADRACE_PUBLISH_IMPRESSIONS)"
        )
    return await services.predictor.predict(decoded)


def response_headers(prediction: Prediction) -> list[tuple[str, str]]:
    """The answer's own headers, besides its type and length."""
    headers = [("X-Request-ID", prediction.request_id)]
    if prediction.degraded:
        headers.append(("X-Headrace-Degraded", "aggregates-unavailable"))
    return headers
