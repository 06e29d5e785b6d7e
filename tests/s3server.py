"""A real S3-API server for the tests: moto's standalone server, on 127.0.0.1 only.

Started once per test session (per pytest-xdist worker) by the `s3_server` fixture
(tests/conftest.py) on a free port, or on HEADRACE_TEST_S3_PORT plus the worker's number,
and stopped at the end. Each test gets its own bucket, and the usual AWS variables
pointing at the server, through `s3_url`.
"""

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port, wait_for

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "headrace-test",
    "AWS_SECRET_ACCESS_KEY": "headrace-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Credentials the local server accepts (it checks none); the endpoint is added per server."""


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5):  # noqa: S310 (http to 127.0.0.1)
            return True
    except urllib.error.HTTPError:
        return True  # it answered, which is all we wait for
    except OSError:
        return False


@contextmanager
def moto_server(log: Path, port: int | None = None) -> Iterator[str]:
    """Run moto's S3-compatible server; yields its endpoint URL."""
    fixed = os.environ.get("HEADRACE_TEST_S3_PORT")
    # Each worker of `pytest -n N` ("gw0", "gw1", ...) runs a server of its own.
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    port = port or (int(fixed) + worker if fixed else free_port())
    endpoint = f"http://127.0.0.1:{port}"
    executable = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: process.poll() is not None or _answers(endpoint),
                f"the local S3 server on port {port}",
            )
            if process.poll() is not None:
                raise RuntimeError(f"the local S3 server exited: {log.read_text()[-2000:]}")
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
