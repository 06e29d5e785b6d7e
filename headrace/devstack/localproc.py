"""Small process helpers of the local stack: pid files, detached start, bounded stop, ports."""

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from headrace.devstack.errors import StackError

_LOCAL_HOSTS = ("127.0.0.1", "localhost")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, held for the `with` block (the file stays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Popen objects of the servers this Python process started: kept so we can reap
# them (no zombies when a test stops what it started) and so Python does not
# warn about "still running" subprocesses when they are garbage collected.
_children: dict[int, "subprocess.Popen[bytes]"] = {}


def spawn(argv: list[str], *, log: Path, cwd: Path) -> int:
    """Start a server detached from our session, its output appended to `log`; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the shell that ran `headrace stack up`
            # (or the end of that shell) must not stop the server.
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def exited(pid: int) -> bool:
    """True when the process is gone or a zombie (reaped here if it is our child)."""
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return False
        del _children[pid]
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM (the servers flush and shut down cleanly on it), SIGKILL if that takes too long."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if exited(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if exited(pid):
                return
            time.sleep(0.05)
    raise StackError(f"process {pid} did not exit even after SIGKILL", f"check `ps -p {pid}`")


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def log_tail(log: Path, *, since: int = 0, lines: int = 15) -> str:
    """The log's last lines written after byte `since`, indented, for error messages."""
    try:
        with log.open("rb") as handle:
            handle.seek(since if since <= log.stat().st_size else 0)
            text = handle.read().decode(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        text = []
    return "\n".join(f"  {line}" for line in text) or "  (no output)"


def require_local(host: str, env_var: str) -> None:
    if host not in _LOCAL_HOSTS:
        raise StackError(
            f"the local stack runs on 127.0.0.1 only, but {env_var} points at {host}",
            f"unset {env_var}, or set it to a 127.0.0.1 address",
        )


def require_free(port: int, what: str, env_hint: str) -> None:
    """StackError naming the port and the variable to change when the port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The servers set SO_REUSEADDR too, so a port held only by closing
        # connections (TIME_WAIT) counts as free, exactly as it will for them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StackError(
                f"port {port} on 127.0.0.1, wanted for {what}, is in use by another process",
                f"stop that process (`ss -ltnp 'sport = :{port}'` shows it) or set {env_hint}",
            ) from exc
