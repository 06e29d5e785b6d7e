"""GET /drift/alerts (newest alerts, filtered) and /drift/alerts/stream (live, as SSE)."""

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from api.deps import ServicesDep
from api.routes import json_response
from guards import alertstore

router = APIRouter(prefix="/drift", tags=["drift"])

_BLOCK_MS = 1_000
"""How long one read waits for a new alert; an idle stream sends a comment this often."""


@router.get("/alerts", summary="Drift and rollback alerts, oldest first")
def list_alerts(
    services: ServicesDep,
    since: float | None = Query(
        default=None, description="event time (Unix s): alerts at or after"
    ),
    model: str | None = Query(default=None, max_length=64),
    variant: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Response:
    alerts = alertstore.recent(
        services.redis,
        services.stream.key_prefix,
        since=since,
        model=model,
        variant=variant,
        limit=limit,
    )
    return json_response({"alerts": alerts})


@router.get(
    "/alerts/stream",
    summary="Alerts as server-sent events, from now (or after Last-Event-ID)",
    response_class=StreamingResponse,
)
async def stream_alerts(request: Request, services: ServicesDep) -> StreamingResponse:
    last_id = request.headers.get("last-event-id") or "$"
    if last_id == "$":
        # Resolve "now" once, so alerts raised between two reads are not skipped.
        newest = await asyncio.to_thread(
            services.redis.xrevrange, alertstore.alerts_key(services.stream.key_prefix), count=1
        )
        last_id = newest[0][0].decode() if newest else "0-0"

    async def events() -> AsyncIterator[bytes]:
        nonlocal last_id
        yield b": headrace drift alerts\n\n"
        while not await request.is_disconnected():
            batch = await asyncio.to_thread(
                alertstore.after, services.redis, services.stream.key_prefix, last_id, _BLOCK_MS
            )
            if not batch:
                yield b": keep-alive\n\n"
                continue
            for entry_id, alert in batch:
                last_id = entry_id
                yield b"id: %s\nevent: alert\ndata: %s\n\n" % (
                    entry_id.encode(),
                    orjson.dumps(alert),
                )

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
