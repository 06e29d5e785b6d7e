"""The learner's Prometheus endpoint: /metrics on HEADRACE_METRICS_HOST:HEADRACE_METRICS_PORT.

A taken port stops the learner at once with MetricsPortError, before it asks for the
shard: two learners on one host need a port each (or 0, no endpoint). Falling back to
another port would leave the scrape target pointing at the other learner, and this one's
metrics (and alerts) missing unnoticed.
"""

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from learner.errors import MetricsPortError


def serve_metrics(host: str, port: int) -> tuple[WSGIServer, threading.Thread] | None:
    """Serve the metrics in a daemon thread; None when `port` is 0 (off)."""
    if not port:
        return None
    try:
        return start_http_server(port, addr=host)
    except OSError as exc:
        raise MetricsPortError(host, port, exc) from exc
