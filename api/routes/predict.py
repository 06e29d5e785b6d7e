"""POST /predict: the body is read (size-capped) and decoded by msgspec, not by FastAPI.

FastAPI sees no body parameter, so it neither parses nor validates the body; the OpenAPI
document still describes it, from the msgspec types (`openapi_extra`).
"""

from typing import Any

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from api.deps import ServicesDep, authorize, read_body, require_json
from api.errors import ForbiddenError
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
    # A plain call, not a second dependency: FastAPI's resolution costs more than the check.
    authenticated = authorize(request, services)
    require_json(request)
    body = await read_body(request, services.settings.max_body_bytes)
    decoded = services.decoder.decode(body)
    if decoded.publish_impressions and not (authenticated or services.settings.publish_impressions):
        # Impressions become training data: an anonymous caller must not write it.
        raise ForbiddenError(
            "publish_impressions needs an API key (HEADRACE_API_KEYS); "
            "or the server publishes them for every request (HEADRACE_PUBLISH_IMPRESSIONS)"
        )
    prediction = await services.predictor.predict(decoded)
    headers = {"X-Request-ID": prediction.request_id}
    if prediction.degraded:
        headers["X-Headrace-Degraded"] = "aggregates-unavailable"
    after = prediction.after
    return Response(
        prediction.body,
        media_type="application/json",
        headers=headers,
        background=BackgroundTask(after) if after is not None else None,
    )
