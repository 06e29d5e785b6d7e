"""GET /models/{shard}/{variant}/export: the logistic model as versioned JSON (api/export.py)."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.deps import ServicesDep
from api.errors import NotExportableError, NotFoundError
from api.export import SCHEMA_VERSION, export
from api.routes import json_response

router = APIRouter(tags=["models"])


@router.get(
    "/models/{shard}/{variant}/export",
    summary=(
        f"The logistic variant's weights, scaler state and one-hot vocabulary as JSON "
        f"(schema_version {SCHEMA_VERSION}) for api/static/scorer.js; on with "
        "HEADRACE_EXPORT_MODELS"
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The model as served now: its epoch and version are in the body",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
        404: {"description": "Export is off, or no such shard or variant"},
        409: {"description": "The variant is not the logistic pipeline, or not loaded here"},
    },
)
async def export_model(
    shard: str, variant: str, request: Request, services: ServicesDep
) -> Response:
    if not services.settings.export_models:
        raise NotFoundError("model export is off (HEADRACE_EXPORT_MODELS=true turns it on)")
    loaded = services.holder.served.shards.get(shard)
    if loaded is None:
        raise NotFoundError(f"no model is served for shard {shard!r}")
    if variant not in loaded.meta.get("variants", {}):
        known = ", ".join(loaded.variant_names)
        raise NotFoundError(f"shard {shard} has no variant {variant!r} (it has: {known})")
    found = loaded.variants.get(variant)
    if found is None:
        raise NotExportableError(
            f"variant {variant!r} of shard {shard} is not loaded by this replica "
            "(it loads the variants HEADRACE_TRAFFIC, HEADRACE_SHADOW_VARIANT and "
            "HEADRACE_CASCADE name)"
        )
    # One model state, one document: the blob's signed digest and the state it came in.
    etag = f'"{loaded.epoch}-{loaded.version}-{found.digest[:16]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    response = json_response(export(loaded, found))
    response.headers.update(headers)
    return response
