"""GET /drift/alerts (newest alerts, filtered) and /drift/alerts/stream (live, as SSE).

Both need an API key or the admin token when HEADRACE_API_KEYS is set. The live streams
of a worker share one Redis reader (`api.alertfeed`), at most HEADRACE_MAX_ALERT_STREAMS
at once.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import redis
from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api.alertfeed import AlertFeed, Entry, Subscriber, newer
from api.deps import ReaderDep
from api.errors import InvalidHeaderError
from api.routes import json_response
from learner import alertstore

log = logging.getLogger("headrace.api")

router = APIRouter(prefix="/drift", tags=["drift"])

_KEEP_ALIVE_S = 1.0
"""An idle stream sends a comment this often (proxies close silent connections)."""


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {}}}


@router.get(
    "/alerts",
    summary="Drift and rollback alerts, oldest first",
    responses={401: _error("API keys are configured and the request has none, or a wrong one")},
)
def list_alerts(
    services: ReaderDep,
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
    responses={
        400: _error("Last-Event-ID is not an alert id (<ms>-<seq>)"),
        401: _error("API keys are configured and the request has none, or a wrong one"),
        503: _error("Every live stream of this worker is taken (Retry-After)"),
    },
)
async def stream_alerts(request: Request, services: ReaderDep) -> StreamingResponse:
    resume = request.headers.get("last-event-id")
    if resume is not None:
        try:
            alertstore.parse_id(resume)
        except ValueError as exc:
            raise InvalidHeaderError(str(exc), field="Last-Event-ID") from None
    feed = services.alerts
    subscriber = feed.subscribe()
    return _AlertStream(
        _events(feed, subscriber, resume),
        on_close=lambda: feed.unsubscribe(subscriber),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


class _AlertStream(StreamingResponse):
    """Gives the subscriber's place back however the response ends (done, gone, failed)."""

    def __init__(
        self, content: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _event(entry: Entry) -> bytes:
    entry_id, alert = entry
    return b"id: %s\nevent: alert\ndata: %s\n\n" % (entry_id.encode(), orjson.dumps(alert))


async def _events(feed: AlertFeed, sub: Subscriber, resume: str | None) -> AsyncIterator[bytes]:
    # The first bytes go out at once, whatever Redis does.
    yield b": headrace drift alerts\n\n"
    while not sub.positioned.is_set():
        try:
            await asyncio.wait_for(sub.positioned.wait(), _KEEP_ALIVE_S)
        except TimeoutError:
            yield b": keep-alive\n\n"
    assert sub.start is not None
    if resume is not None and newer(sub.start, resume):
        try:
            missed = await feed.backlog(resume, sub.start)
        except (redis.RedisError, OSError) as exc:
            # The client reconnects with its Last-Event-ID and tries again.
            log.warning("cannot read the alerts a stream missed: %s", exc)
            return
        for entry in missed:
            yield _event(entry)
        resume = None
    while not sub.dropped:
        try:
            entry = await asyncio.wait_for(sub.queue.get(), _KEEP_ALIVE_S)
        except TimeoutError:
            yield b": keep-alive\n\n"
            continue
        # A client resuming from ahead of the reader already has what comes up to its id.
        if resume is not None and not newer(entry[0], resume):
            continue
        yield _event(entry)
