"""Every failing `headrace` command says what went wrong in one line, with a hint, and exits
non-zero."""

import gc
import socket
from pathlib import Path

import pytest
import redis

from headrace.cli import main
from stream.settings import StreamSettings
from tests.support import free_port, signing_key

KEY = signing_key().text


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert line.startswith("headrace: error: ")
    return line


def test_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["snapshot", "restor"])
    assert stopped.value.code == 2
    line = _one_line(capsys)
    assert "invalid choice: 'restor'" in line and line.endswith(
        "(hint: `headrace snapshot --help`)"
    )


def test_a_bad_setting(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEADRACE_VERIFY_PREVIOUS_KEYS", "dG9vLXNob3J0")  # "too-short"
    assert main(["snapshot", "list"]) == 2
    line = _one_line(capsys)
    assert "shorter than 32 bytes" in line and "dG9vLXNob3J0" not in line
    assert "(hint: " in line


@pytest.mark.integration
def test_a_wrong_redis_password(
    settings: StreamSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEADRACE_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("HEADRACE_REDIS_PASSWORD", "not-the-password-0123456789")
    assert main(["rollback"]) == 1
    line = _one_line(capsys)
    assert "HEADRACE_REDIS_PASSWORD" in line and "not-the-password" not in line


def test_redis_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("HEADRACE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("HEADRACE_SIGNING_KEY", KEY)
    monkeypatch.setenv("HEADRACE_SNAPSHOT_DIR", str(tmp_path))
    assert main(["snapshot", "create"]) == 1
    line = _one_line(capsys)
    assert line.startswith("headrace: error: Redis: ") and "HEADRACE_REDIS_URL" in line


@pytest.mark.integration
def test_rollback_without_a_learner(
    settings: StreamSettings,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HEADRACE_KEY_PREFIX", settings.key_prefix)
    assert main(["rollback", "--variant", "main"]) == 1
    line = _one_line(capsys)
    assert "no learner owns shard main" in line and "headrace learn" in line


@pytest.mark.integration
def test_restoring_a_snapshot_that_does_not_exist(
    settings: StreamSettings,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HEADRACE_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("HEADRACE_SIGNING_KEY", KEY)
    monkeypatch.setenv("HEADRACE_SNAPSHOT_DIR", str(tmp_path))
    assert main(["snapshot", "restore", "latest", "--no-wait"]) == 1
    line = _one_line(capsys)
    assert "not found" in line and "`headrace snapshot list`" in line


def _learn_without_redis(monkeypatch: pytest.MonkeyPatch) -> int:
    """`headrace learn` in this process, with no Redis where it would look: it must stop
    before it needs one."""
    monkeypatch.setenv("HEADRACE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    threshold = gc.get_threshold()
    try:
        return main(["learn"])
    finally:  # the learner tunes the collector for its own process
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_variant_whose_model_function_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The learner refuses to start, before it waits for the shard's lease."""
    monkeypatch.setenv("HEADRACE_VARIANTS", '{"main": "logreg", "x": "no_such_package.m:build"}')
    monkeypatch.setenv("HEADRACE_METRICS_PORT", "0")
    assert _learn_without_redis(monkeypatch) == 1
    line = _one_line(capsys)
    assert "variant 'x': no_such_package.m:build: cannot import no_such_package" in line
    assert "(hint: HEADRACE_VARIANTS" in line


def test_a_second_learner_on_the_metrics_port_of_the_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused at start, before the learner asks Redis for the shard (there is none here)."""
    with socket.socket() as first:  # the first learner's endpoint
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = first.getsockname()[1]
        monkeypatch.setenv("HEADRACE_METRICS_PORT", str(port))
        monkeypatch.setenv("HEADRACE_METRICS_HOST", "127.0.0.1")
        assert _learn_without_redis(monkeypatch) == 1
    line = _one_line(capsys)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "another learner on this host?" in line
    assert "(hint: give each learner on a host its own HEADRACE_METRICS_PORT" in line
