"""GET /dashboard (one live page for operators) and /dashboard/history (its chart data).

The page is static HTML, JavaScript and CSS shipped in the package (api/static); it reads
the API's own JSON routes: /models, /dashboard/history, /drift/alerts and its live stream,
and the admin routes with a token the operator types in. With HEADRACE_API_KEYS set, the
history and the alerts need that token too (or an API key). No third-party code, nothing
inline: the Content-Security-Policy allows this origin's files only.
"""

from importlib import resources
from typing import Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from api.deps import ReaderDep
from api.errors import InvalidRequestError, NotFoundError
from api.routes import json_response
from learner import history
from learner.layout import ShardKeys

STATIC_PACKAGE = ("api", "static")
"""Package and folder of the page's files (package data: served by an installed wheel too)."""

MAX_POINTS = 20_000

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

router = APIRouter(tags=["dashboard"])

_POINTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "points": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["model", "points"],
}


@router.get("/dashboard", include_in_schema=False)
def page() -> Response:
    html = resources.files(STATIC_PACKAGE[0]).joinpath(STATIC_PACKAGE[1], "dashboard.html")
    return Response(
        html.read_bytes(),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get(
    "/dashboard/history",
    summary="Points of a shard's metrics history, oldest first (after a point id, or the newest)",
    response_class=Response,
    responses={
        200: {
            "description": "Each point: id, ts, version, n_learned, learned_per_s, "
            "events_per_s, lag, quarantined per rule, per-variant log loss and ROC AUC",
            "content": {"application/json": {"schema": _POINTS_SCHEMA}},
        },
        401: {"description": "API keys are configured and the request has none, or a wrong one"},
        404: {"description": "No such model (shard)"},
        422: {"description": "A bad query parameter"},
    },
)
def points(
    services: ReaderDep,
    model: str | None = Query(default=None, max_length=64, description="the shard; default first"),
    after: str | None = Query(
        default=None,
        pattern=r"^[0-9]{1,20}-[0-9]{1,20}$",
        description="a point id: only the points after it (the newest `limit` when absent)",
    ),
    limit: int = Query(default=MAX_POINTS, ge=1, le=MAX_POINTS),
) -> Response:
    names = services.holder.shard_names
    name = model or names[0]
    if name not in names:
        raise NotFoundError(f"unknown model {name!r}; models: {', '.join(names)}")
    try:
        start = history.parse_id(after) if after is not None else None
    except ValueError as exc:
        raise InvalidRequestError(str(exc), field="after") from exc
    keys = ShardKeys(services.stream.key_prefix, name)
    found = history.read(services.redis, keys, start, limit)
    return json_response(
        {"model": name, "points": [{"id": entry_id, **point} for entry_id, point in found]}
    )
