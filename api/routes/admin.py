"""Operator routes: list, take and restore snapshots; roll back. Behind the admin token.

Without HEADRACE_ADMIN_TOKEN they are off (404). The token is compared in
constant time; a missing one is 401, a wrong one 403. It is checked before a byte of the
body is read (`AdminRoute`), and a body over ADMIN_MAX_BODY_BYTES is refused (413)
unparsed. An unknown model is 404. Taking and restoring a snapshot signs, and the API
holds no signing key: the shard's owning learner does that work
(learner/operations.py); with no learner running the API answers 409. Handlers are plain
functions: FastAPI runs them in its thread pool, so waiting for a learner never blocks
the event loop.
"""

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response
from starlette.types import Message

from api.deps import Services, ServicesDep, read_body, require_json
from api.errors import (
    AdminOffError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
    from_domain,
)
from api.routes import json_response
from learner.errors import LearnerError, OperationError
from learner.layout import ShardKeys
from learner.operations import restore_snapshot, roll_back, take_snapshot
from learner.recovery import Snapshots
from snapshots.errors import SnapshotError


def require_admin(request: Request, services: ServicesDep) -> Services:
    tokens = services.settings.admin_tokens()
    if not tokens:
        raise AdminOffError("admin routes are off: set HEADRACE_ADMIN_TOKEN to turn them on")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise UnauthorizedError("the admin routes need 'Authorization: Bearer <admin token>'")
    digest = hashlib.sha256(given.strip().encode()).digest()
    # Every token is compared, so the time taken does not say which one nearly matched.
    matches = [hmac.compare_digest(digest, hashlib.sha256(t.encode()).digest()) for t in tokens]
    if not any(matches):
        raise ForbiddenError("the admin token is not valid")
    return services


AdminDep = Annotated[Services, Depends(require_admin)]

ADMIN_MAX_BODY_BYTES = 16 * 1024
"""Largest admin body: a snapshot id, a variant, a reason of 500 characters fit many times."""


class AdminRoute(APIRoute):
    """Checks the admin token, then reads at most ADMIN_MAX_BODY_BYTES, before FastAPI parses.

    FastAPI reads and parses a route's body before it resolves any dependency, so a
    token dependency alone would let anyone make the API read and parse any body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            require_admin(request, request.app.state.services)
            body = await read_body(request, ADMIN_MAX_BODY_BYTES)
            if body:
                require_json(request.headers)
            return await handler(Request(request.scope, _replay(body, request)))

        return guarded


def _replay(body: bytes, request: Request) -> Callable[[], Coroutine[Any, Any, Message]]:
    """A `receive` that hands over the body already read, then waits as the original does."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return receive


router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute)


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    snapshot: str = Field(min_length=1, max_length=200)
    """A snapshot id, "latest" or "last_known_good"."""
    replay: bool = True
    """Learn again the events since the snapshot (true) or skip them (false)."""
    model: str | None = None
    """The shard (model); the first one of HEADRACE_SHARDS when omitted."""


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str | None = None
    """One variant, or every variant of the shard when omitted."""
    reason: str = Field(default="operator rollback", max_length=500)
    model: str | None = None


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None


def _snapshots(services: Services) -> Snapshots:
    if services.snapshots is None:
        raise UnavailableError("snapshots are not configured: set HEADRACE_ADMIN_TOKEN")
    return services.snapshots


def _keys(services: Services, model: str | None) -> ShardKeys:
    names = services.holder.shard_names
    name = model or names[0]
    if name not in names:
        raise NotFoundError(f"unknown model {name!r}; models: {', '.join(names)}")
    return ShardKeys(services.stream.key_prefix, name)


def _act(action: Any) -> Response:
    try:
        return json_response(action())
    except (SnapshotError, OperationError, LearnerError) as exc:
        raise from_domain(exc) from exc


@router.get("/verify", summary="Answers 200 when the bearer token is the admin token")
def verify(services: AdminDep) -> Response:
    return json_response({"admin": True, "snapshots": services.snapshots is not None})


@router.get("/snapshots", summary="Every valid snapshot, oldest first; refused files with why")
def list_snapshots(services: AdminDep) -> Response:
    snapshots = _snapshots(services)

    def listing() -> dict[str, Any]:
        return {
            "snapshots": [
                {
                    **i.header.model_dump(mode="json"),
                    "size": i.size,
                    "last_known_good": i.last_known_good,
                }
                for i in snapshots.store.list()
            ],
            "refused": [{"name": r.name, "reason": r.reason} for r in snapshots.store.rejected()],
        }

    return _act(listing)


@router.post("/snapshots", summary="Take a snapshot of a shard now")
def create_snapshot(services: AdminDep, body: SnapshotRequest | None = None) -> Response:
    keys = _keys(services, body.model if body else None)
    snapshots = _snapshots(services)
    return _act(lambda: take_snapshot(services.redis, keys, snapshots))


@router.post("/restore", summary="Restore a snapshot as a new version, with or without replay")
def restore(services: AdminDep, body: RestoreRequest) -> Response:
    keys = _keys(services, body.model)
    snapshots = _snapshots(services)
    return _act(
        lambda: restore_snapshot(services.redis, keys, snapshots, body.snapshot, replay=body.replay)
    )


@router.post("/rollback", summary="Serve the last-known-good model again (the owning learner acts)")
def rollback(services: AdminDep, body: RollbackRequest) -> Response:
    keys = _keys(services, body.model)
    return _act(lambda: roll_back(services.redis, keys, variant=body.variant, reason=body.reason))
