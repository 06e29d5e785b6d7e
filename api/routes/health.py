"""GET /health (the process answers), /ready (it can serve well), /metrics (Prometheus)."""

from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from api.cascade import problem
from api.cascadespec import for_shard
from api.deps import Services, ServicesDep
from api.routes import json_response

router = APIRouter(tags=["operations"])

_READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ready": {"type": "boolean"},
        "degraded": {"type": "boolean"},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "models": {"type": "object", "additionalProperties": {"type": "integer"}},
        "refused": {"type": "object", "additionalProperties": {"type": "string"}},
        "rewound": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["ready", "degraded", "reasons", "models"],
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@router.get(
    "/health",
    summary="The process is alive",
    response_class=Response,
    responses={200: _json("Always, while the process runs", {"type": "object"})},
)
async def health() -> Response:
    return json_response({"status": "ok"})


def not_ready_reasons(services: Services) -> list[str]:
    reasons: list[str] = []
    if not services.health.ok:
        reasons.append(f"redis: {services.health.reason}")
    served = services.holder.served
    if served.router is None or not served.router.routable:
        reasons.append("the shard layout is unknown until a learner publishes")
    refused = services.holder.refused
    for name in services.holder.shard_names:
        if name not in served.shards:
            why = refused.get(name)
            reasons.append(why if why is not None else f"shard {name}: no model loaded yet")
    missing = services.holder.missing
    for name in services.holder.shard_names:
        if (gone := missing.get(name)) is not None:
            reasons.append(gone)
    return reasons + cascade_problems(services)


def cascade_problems(services: Services) -> list[str]:
    """A configured cascade whose variants the shard's loaded state lacks (its users get 503)."""
    cascades = services.predictor.cascades
    found = []
    for name, shard in services.holder.served.shards.items():
        spec = for_shard(cascades, name) if cascades else None
        if spec is not None and (why := problem(spec, shard)) is not None:
            found.append(why)
    return found


def degraded(services: Services) -> bool:
    """Models are answered from memory without what Redis should hold for them."""
    holder = services.holder
    return bool(holder.served.shards) and (not services.health.ok or bool(holder.missing))


@router.get(
    "/ready",
    summary="A model is loaded for every shard, Redis answers and still holds every shard's "
    "state; `degraded` says models are served from memory without it; `refused` names "
    "versions whose signature did not verify; `rewound` names shards whose state in Redis is "
    "older than the one served",
    response_class=Response,
    responses={
        200: _json("Ready to serve", _READY_SCHEMA),
        503: _json("Not ready; `reasons` says why", _READY_SCHEMA),
    },
)
async def ready(services: ServicesDep) -> Response:
    reasons = not_ready_reasons(services)
    versions = {name: m.version for name, m in services.holder.served.shards.items()}
    body: dict[str, Any] = {
        "ready": not reasons,
        "degraded": degraded(services),
        "reasons": reasons,
        "models": versions,
    }
    if services.holder.refused:
        # Still serving the last good version (so ready), but someone must look.
        body["refused"] = dict(services.holder.refused)
    if services.holder.rewound:
        # Serving a newer state than Redis holds (it lost writes): ready, but not for long
        # without a learner, which takes the shard over under a new epoch.
        body["rewound"] = dict(services.holder.rewound)
    return json_response(body, 503 if reasons else 200)


@router.get(
    "/metrics",
    summary="Prometheus metrics of this worker",
    response_class=Response,
    responses={200: {"description": "Text exposition format", "content": {"text/plain": {}}}},
)
async def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
