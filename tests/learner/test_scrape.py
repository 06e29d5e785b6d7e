"""The learner's Prometheus endpoint: a second learner on the same port is told so."""

import urllib.request

import pytest

from learner.errors import MetricsPortError
from learner.scrape import serve_metrics
from tests.support import free_port


def test_a_second_endpoint_on_a_taken_port_names_the_settings() -> None:
    port = free_port()
    first = serve_metrics("127.0.0.1", port)
    assert first is not None
    server, thread = first
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
            assert answer.status == 200
        with pytest.raises(MetricsPortError) as refused:
            serve_metrics("127.0.0.1", port)
        message = str(refused.value)
        assert f"127.0.0.1:{port}" in message
        assert "HEADRACE_METRICS_PORT" in message
        assert "another learner on this host?" in message
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def test_port_0_serves_no_endpoint() -> None:
    assert serve_metrics("127.0.0.1", 0) is None
