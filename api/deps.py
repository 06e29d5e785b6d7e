"""What routes take as parameters: the app's services, an authorized caller, the raw body."""

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request

from api.errors import BodyTooLargeError, UnauthorizedError, UnsupportedMediaTypeError
from api.holder import ModelHolder
from api.online import RedisHealth
from api.predictor import Predictor
from api.schemas import RequestDecoder
from api.settings import ApiSettings
from api.telemetry import Metrics
from stream.recovery import Snapshots
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


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def key_digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def authorize(request: Request, services: Services) -> None:
    """Accept the request when no keys are configured or it carries one of them."""
    digests = services.key_digests
    if not digests:
        return
    given = request.headers.get("x-api-key")
    if given is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if not given:
        raise UnauthorizedError("an API key is required (X-API-Key or Authorization: Bearer)")
    digest = key_digest(given)
    # Every key is compared, in constant time, whichever matches.
    matched = False
    for accepted in digests:
        matched |= hmac.compare_digest(digest, accepted)
    if not matched:
        raise UnauthorizedError("the API key is not valid")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    content_type = request.headers.get("content-type")
    if content_type is not None and "json" not in content_type.lower():
        raise UnsupportedMediaTypeError(f"send application/json, not {content_type[:100]!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    # Counted as it streams: a chunked body (no Content-Length) or a false one is cut off too.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
