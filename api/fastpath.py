"""POST /predict answered before Starlette's middleware stack, router and FastAPI's
dependency resolution, which cost as much CPU as the model itself at 100 candidates.

The same checks, in the same order, with the same errors and metrics as the route in
api/routes/predict.py (which also keeps /predict in the OpenAPI document); every other
request, and /predict under a root path, goes through FastAPI as before.
"""

import time
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from api.deps import Services, receive_body
from api.errors import ApiError, error_body, unexpected
from api.routes.predict import admit, answer, response_headers
from api.telemetry import Metrics

ROUTE = "/predict"
_JSON = (b"content-type", b"application/json")


class HeadraceApp(FastAPI):
    """FastAPI, with POST /predict taken by `fast_predict` when one is set."""

    fast_predict: "FastPredict | None" = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_predict
        if (
            fast is not None
            and scope["type"] == "http"
            and scope["path"] == ROUTE
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            await fast(self.state, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class FastPredict:
    """One POST /predict, from the ASGI scope to the response, timed and counted as the
    app's LatencyMiddleware counts every other route."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._latency = metrics.latency.labels(ROUTE, "POST")
        self._ok = metrics.responses.labels(ROUTE, "POST", "200")

    async def __call__(self, state: Any, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            services: Services = state.services
            headers = Headers(scope=scope)
            authenticated = admit(headers, services)
            body = await receive_body(receive, headers, services.settings.max_body_bytes)
            prediction = await answer(services, body, authenticated)
        except ApiError as exc:
            error = error_body(exc.code, exc.message, exc.field)
            await _respond(send, exc.status, error, list(exc.headers.items()))
            self._counted(started, str(exc.status))
            return
        except ClientDisconnect:
            # Gone before its body arrived: no answer to send, none to count.
            return
        except Exception as exc:
            error = error_body("internal", unexpected(ROUTE, exc))
            await _respond(send, 500, error, [])
            self._counted(started, "500")
            return
        await _respond(send, 200, prediction.body, response_headers(prediction))
        self._latency.observe(time.perf_counter() - started)
        self._ok.inc()
        if prediction.after is not None:
            # After the response, as Starlette runs a background task.
            await prediction.after()

    def _counted(self, started: float, status: str) -> None:
        self._latency.observe(time.perf_counter() - started)
        self.metrics.responses.labels(ROUTE, "POST", status).inc()


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
