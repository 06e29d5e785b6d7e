"""What routes take as parameters: the app's services, an authorized caller, the raw body."""

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from api.alertfeed import AlertFeed
from api.errors import BodyTooLargeError, UnauthorizedError, UnsupportedMediaTypeError
from api.holder import ModelHolder
from api.online import RedisHealth
from api.predictor import Predictor
from api.schemas import RequestDecoder
from api.settings import ApiSettings
from api.telemetry import Metrics
from learner.recovery import Snapshots
from stream.settings import StreamSettings


@dataclass(frozen=True, slots=True)
class Services:
    """The long-lived parts of one app, built and started by its lifespan."""

    settings: ApiSettings
    metrics: Metrics
    health: RedisHealth
    holder: ModelHolder
    predictor: Predictor
    decoder: RequestDecoder
    key_digests: tuple[bytes, ...]
    """sha256 of each accepted API key (equal lengths: the comparison leaks nothing)."""
    clock: Callable[[], float]
    stream: StreamSettings
    redis: redis.Redis
    """A plain client for operator actions and alert reads (not the request path)."""
    snapshots: Snapshots | None
    """The snapshot store, with verifying keys only; None while the admin routes are off."""
    alerts: AlertFeed
    """The live alert streams' one shared reader."""


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def key_digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def _presented_key(headers: Headers) -> str | None:
    given = headers.get("x-api-key")
    if given is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    return given or None


def _matches(given: str, digests: tuple[bytes, ...]) -> bool:
    digest = key_digest(given)
    # Every digest is compared, in constant time, whichever matches.
    matched = False
    for accepted in digests:
        matched |= hmac.compare_digest(digest, accepted)
    return matched


def authorize(headers: Headers, services: Services) -> bool:
    """Accept the request when no keys are configured or it carries one of them.

    True when the caller proved a key: only such a caller may ask for impressions."""
    digests = services.key_digests
    if not digests:
        return False
    given = _presented_key(headers)
    if given is None:
        raise UnauthorizedError("an API key is required (X-API-Key or Authorization: Bearer)")
    if not _matches(given, digests):
        raise UnauthorizedError("the API key is not valid")
    return True


async def authorize_reader(request: Request, services: ServicesDep) -> Services:
    """The operator's read routes (alerts, metrics history): an API key or an admin token.

    Open when no API keys are configured, as /predict is; the admin token is accepted too,
    so the dashboard reads with the token the operator typed."""
    digests = services.key_digests
    if not digests:
        return services
    given = _presented_key(request.headers)
    if given is None:
        raise UnauthorizedError("an API key or the admin token is required")
    admin = tuple(key_digest(t) for t in services.settings.admin_tokens())
    # Both sets are compared, so the time taken does not say which kind nearly matched.
    if not (_matches(given, digests) | _matches(given, admin)):
        raise UnauthorizedError("the key is not valid")
    return services


ReaderDep = Annotated[Services, Depends(authorize_reader)]


def require_json(headers: Headers) -> None:
    """415 unless the body is declared as JSON: `application/json` or `application/*+json`.

    A missing Content-Type is refused too: a browser's cross-site form or no-cors fetch can
    only send text/plain, form or multipart bodies, so it never gets past this check."""
    content_type = headers.get("content-type")
    if content_type is None:
        raise UnsupportedMediaTypeError("send the body as application/json (no Content-Type)")
    essence = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = essence.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        raise UnsupportedMediaTypeError(f"send application/json, not {content_type[:100]!r}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    return await receive_body(request.receive, request.headers, limit)


async def receive_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The body from the ASGI `receive`, refused with 413 as soon as it is known to exceed
    `limit` bytes; ClientDisconnect when the client goes away first."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    # Counted as it streams: a chunked body (no Content-Length) or a false one is cut off too.
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
