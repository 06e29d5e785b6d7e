"""What supervising one local server takes, whichever it is: its pid file, a detached
start that waits until it answers, and a bounded stop.

Kafka and Redis differ only in how they are started and asked whether they answer
(`kafka_local`, `redis_local`); the rest is here, once.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headrace.devstack.errors import StackError
from headrace.devstack.localproc import exited, log_size, log_tail, read_pid, spawn, terminate


@dataclass(frozen=True)
class Server:
    """One local server as its supervisor sees it."""

    name: str
    """What messages call it: "Kafka", "redis-server"."""
    address: str
    pid_file: Path
    output: Path
    """The file its output is appended to, whose tail an error shows."""
    logs_hint: str
    """Where to read more when it fails: "full log: ..."."""
    is_ours: Callable[[int], bool]
    """Whether a live pid is this server, not another process that reused the pid."""


def running_pid(server: Server) -> int | None:
    """Pid of the server if it runs; a stale pid file is removed."""
    pid = read_pid(server.pid_file)
    if pid is None:
        return None
    if exited(pid) or not server.is_ours(pid):
        server.pid_file.unlink(missing_ok=True)
        return None
    return pid


def launch(server: Server, argv: list[str], cwd: Path, wait: Callable[[int, int], None]) -> int:
    """Start the server detached, record its pid, and `wait(pid, since)` until it answers.

    StackError if it already runs. On a failed (or interrupted) start the half-started
    server is stopped again: it is never left behind."""
    if (pid := running_pid(server)) is not None:
        raise StackError(
            f"{server.name} already runs with pid {pid}", "headrace stack down stops it"
        )
    since = log_size(server.output)
    pid = spawn(argv, log=server.output, cwd=cwd)
    server.pid_file.write_text(f"{pid}\n")
    try:
        wait(pid, since)
    except BaseException:
        terminate(pid, 10.0)
        server.pid_file.unlink(missing_ok=True)
        raise
    return pid


def wait_answering(
    server: Server,
    pid: int,
    timeout: float,
    answers: Callable[[float], bool],
    *,
    since: int = 0,
    poll_s: float = 0.1,
    slow_hint: str = "",
) -> None:
    """Wait until `answers(probe_timeout)` is true, or raise StackError with the output's
    tail since byte `since` (where this start's output begins)."""
    deadline = time.monotonic() + timeout
    while True:
        if exited(pid):
            raise StackError(
                f"{server.name} (pid {pid}) exited during start-up:\n"
                f"{log_tail(server.output, since=since)}",
                server.logs_hint,
            )
        remaining = deadline - time.monotonic()
        if answers(min(3.0, max(remaining, 0.5))):
            return
        if time.monotonic() >= deadline:
            raise StackError(
                f"{server.name} (pid {pid}) did not answer on {server.address} "
                f"within {timeout:.0f} s:\n{log_tail(server.output, since=since)}",
                server.logs_hint + (f"; {slow_hint}" if slow_hint else ""),
            )
        time.sleep(poll_s)


def stop(server: Server, timeout: float) -> int | None:
    """Stop the server (SIGTERM, SIGKILL after `timeout`); return its pid if it ran."""
    pid = running_pid(server)
    if pid is not None:
        terminate(pid, timeout)
    server.pid_file.unlink(missing_ok=True)
    return pid
