"""Every error the API answers with, and the one place where errors become HTTP responses.

The body is always `{"error": {"code": ..., "message": ..., "field"?: ...}}`: a stable
machine-readable code, a message for people, and for request errors the JSON path of the
offending field. No stack trace ever leaves the process: unexpected exceptions become a
500 that names only the request id (the trace goes to the server log).
"""

import logging
import os
import re
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("headrace.api")

_FIELD = re.compile(r" - at `(\$[^`]*)`$")


class ApiError(Exception):
    """Base of the API's own errors: each subclass is one status and one code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(
        self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}


class MalformedBodyError(ApiError):
    """The body is not JSON at all (syntax, encoding, NaN/Infinity tokens, empty)."""

    status = 422
    code = "invalid_json"


class InvalidRequestError(ApiError):
    """The JSON does not fit the request schema; `field` is its path, e.g. $.candidates[3]."""

    status = 422
    code = "invalid_request"

    @classmethod
    def from_msgspec(cls, text: str) -> "InvalidRequestError":
        """msgspec says "Expected `float`, got `str` - at `$.candidates[3].price`"."""
        match = _FIELD.search(text)
        return cls(text, field=match.group(1) if match else "$")


class InvalidHeaderError(ApiError):
    """A request header the route reads is malformed; `field` names the header."""

    status = 400
    code = "invalid_header"


class BodyTooLargeError(ApiError):
    status = 413
    code = "body_too_large"


class UnsupportedMediaTypeError(ApiError):
    status = 415
    code = "unsupported_media_type"


class UnauthorizedError(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="headrace"'})


class NoModelError(ApiError):
    """No model can answer yet (nothing published for the user's shard)."""

    status = 503
    code = "no_model"

    def __init__(self, message: str) -> None:
        # The holder looks for new versions at least every second.
        super().__init__(message, headers={"Retry-After": "1"})


class ModelOutputError(ApiError):
    """The model gave scores that are not probabilities (NaN): it is broken, not the request."""

    status = 503
    code = "model_output"


class CascadeError(ApiError):
    """The shard's cascade names a variant its published state does not have."""

    status = 503
    code = "cascade_unavailable"


class NotExportableError(ApiError):
    """The variant has no JSON form: not the logistic pipeline, or non-finite numbers."""

    status = 409
    code = "not_exportable"


class AdminOffError(ApiError):
    """Admin routes answer only when HEADRACE_ADMIN_TOKEN is configured."""

    status = 404
    code = "admin_off"


class ForbiddenError(ApiError):
    status = 403
    code = "forbidden"


class NotFoundError(ApiError):
    status = 404
    code = "not_found"


class ConflictError(ApiError):
    """The operation cannot be carried out now (a learner busy, nothing to roll back to)."""

    status = 409
    code = "conflict"


class RefusedError(ApiError):
    """A snapshot was refused (bad signature, truncated, another model...): nothing loaded."""

    status = 422
    code = "snapshot_refused"


class UnavailableError(ApiError):
    status = 503
    code = "unavailable"


class TooManyStreamsError(ApiError):
    """Every live alert stream of this worker is taken (HEADRACE_MAX_ALERT_STREAMS)."""

    status = 503
    code = "too_many_streams"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "5"})


def from_domain(exc: Exception) -> ApiError:
    """The HTTP answer to an operator action's domain error (snapshots, operations)."""
    from learner.errors import OperationError
    from snapshots import errors as snap

    message = str(exc)
    if isinstance(exc, snap.InvalidSnapshotIdError):
        return InvalidRequestError(message, field="$.snapshot")
    if isinstance(exc, snap.SnapshotNotFoundError):
        return NotFoundError(message)
    if isinstance(exc, snap.SnapshotRefusedError):
        return RefusedError(f"{type(exc).__name__}: {message}")
    if isinstance(exc, snap.MissingKeyError | snap.StoreUnavailableError):
        return UnavailableError(message)
    if isinstance(exc, OperationError):
        by_kind: dict[str, type[ApiError]] = {
            "InvalidSnapshotIdError": InvalidRequestError,
            "SnapshotNotFoundError": NotFoundError,
            "StateError": ConflictError,
            "LearnerBusy": ConflictError,
            "MissingKeyError": UnavailableError,
            "StoreUnavailableError": UnavailableError,
        }
        refused = exc.kind.endswith("Error") and exc.kind not in by_kind
        kind = RefusedError if refused else by_kind.get(exc.kind, ConflictError)
        return kind(f"{exc.kind}: {message}")
    return ApiError(message)


def error_body(code: str, message: str, field: str | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return orjson.dumps({"error": error})


def _response(
    status: int, code: str, message: str, field: str | None, headers: dict[str, str]
) -> Response:
    return Response(
        error_body(code, message, field),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _response(exc.status_code, code, str(exc.detail), None, dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = "$." + ".".join(str(part) for part in first["loc"]) if first["loc"] else "$"
    return _response(422, InvalidRequestError.code, str(first["msg"]), field, {})


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _response(500, "internal", unexpected(request.url.path, exc), None, {})


def unexpected(path: str, exc: Exception) -> str:
    """Log an unexpected error with its trace; the message for the client names only a
    reference the operator can find in the log."""
    reference = os.urandom(6).hex()
    log.error(
        "unexpected %s answering %s (reference %s)",
        type(exc).__name__,
        path,
        reference,
        exc_info=exc,
    )
    return f"internal error (reference {reference})"


def install(app: FastAPI) -> None:
    """Map every error to its HTTP answer: the only place that does."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
