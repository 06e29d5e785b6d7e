"""One local redis-server (Debian's package) with its append-only file on, without Docker.

Data (the AOF) in `<stack_dir>/redis`, output in `<stack_dir>/logs/redis.log`,
pid in `<stack_dir>/redis.pid`. Bound to 127.0.0.1 only, and it requires a password
(HEADRACE_REDIS_PASSWORD): whoever can write to Redis can change what the models learn
from, so no local process gets in without it. The password reaches the server in a
config file readable by its owner only, never on a command line.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from headrace.devstack import supervisor
from headrace.devstack.errors import StackError
from headrace.devstack.localproc import require_free, require_local
from stream.probe import tcp_open
from stream.settings import StreamSettings

# Debian installs it in /usr/bin, older packages in /usr/sbin, which a
# non-root PATH may lack.
_FALLBACKS = ("/usr/bin/redis-server", "/usr/sbin/redis-server")


@dataclass(frozen=True)
class RedisPaths:
    data: Path
    log: Path
    pid_file: Path
    config: Path

    @classmethod
    def of(cls, settings: StreamSettings) -> "RedisPaths":
        root = Path(settings.stack_dir).expanduser().resolve()
        return cls(
            data=root / "redis",
            log=root / "logs" / "redis.log",
            pid_file=root / "redis.pid",
            config=root / "redis.conf",
        )


def address(settings: StreamSettings) -> str:
    host, port = settings.redis_host_port
    return f"{host}:{port}"


def server_executable() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return next((path for path in _FALLBACKS if Path(path).is_file()), None)


def check_server() -> str:
    server = server_executable()
    if server is None:
        raise StackError(
            "redis-server is not installed",
            "run scripts/bootstrap, or apt-get install redis-server",
        )
    return server


def check_password(settings: StreamSettings) -> str:
    password = settings.redis_password_value
    if not password:
        raise StackError(
            "the local Redis requires a password, and none is set",
            "set HEADRACE_REDIS_PASSWORD (scripts/demo and scripts/test generate one into "
            "the stack folder: redis.password)",
        )
    if any(ch in password for ch in "\r\n\"' "):
        raise StackError(
            "HEADRACE_REDIS_PASSWORD has spaces, quotes or line breaks",
            "use a generated one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return password


def write_config(path: Path, lines: list[str]) -> None:
    """A config file readable by its owner only: it holds the password."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)


def auth_lines(password: str) -> list[str]:
    # masterauth too: after a failover this server may be made a replica of another.
    return [f"requirepass {password}", f"masterauth {password}"]


def check_port(settings: StreamSettings) -> None:
    host, port = settings.redis_host_port
    require_local(host, "HEADRACE_REDIS_URL")
    require_free(port, "Redis", "HEADRACE_REDIS_URL=redis://127.0.0.1:<port>/0")


def _server(settings: StreamSettings) -> supervisor.Server:
    return server_of(RedisPaths.of(settings), "redis-server", address(settings))


def server_of(paths: RedisPaths, name: str, address: str) -> supervisor.Server:
    return supervisor.Server(
        name=name,
        address=address,
        pid_file=paths.pid_file,
        output=paths.log,
        logs_hint=f"full log: {paths.log}",
        is_ours=lambda pid: _is_ours(pid, paths),
    )


def running_pid(settings: StreamSettings) -> int | None:
    """Pid of this stack's redis-server if it runs; a stale pid file is removed."""
    return supervisor.running_pid(_server(settings))


def _is_ours(pid: int, paths: RedisPaths) -> bool:
    # redis-server rewrites its command line to "redis-server host:port", so the
    # data folder is not in it; but it chdirs into --dir, which is ours alone.
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(f"/proc/{pid}/cwd").readlink()
    except OSError:
        return False
    return b"redis-server" in title and cwd == paths.data


def answering(settings: StreamSettings, timeout: float = 1.0) -> bool:
    """True when the server answers an authenticated PING."""
    try:
        return _ping(settings, timeout)
    except redis.AuthenticationError:
        return False


def _ping(settings: StreamSettings, timeout: float) -> bool:
    """Whether an authenticated PING is answered; AuthenticationError when it is refused."""
    host, port = settings.redis_host_port
    return ping_at(host, port, settings.redis_password_value, timeout)


def ping_at(host: str, port: int, password: str | None, timeout: float) -> bool:
    """Whether the server (or sentinel) at host:port answers an authenticated PING."""
    if not tcp_open(host, port, timeout):
        return False
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One attempt per probe: the caller's loop does the retrying.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        raise
    except redis.RedisError:
        return False
    finally:
        client.close()


def start(settings: StreamSettings, *, timeout: float = 20.0) -> int:
    """Start this stack's redis-server and wait until it answers PING; return its pid."""
    paths = RedisPaths.of(settings)
    server = _server(settings)
    if (pid := supervisor.running_pid(server)) is not None:
        raise StackError(f"Redis already runs with pid {pid}", "headrace stack down stops it")
    executable = check_server()
    password = check_password(settings)
    check_port(settings)
    _, port = settings.redis_host_port
    paths.data.mkdir(parents=True, exist_ok=True)
    write_config(paths.config, auth_lines(password))
    argv = server_argv(executable, paths, port)
    return supervisor.launch(
        server,
        argv,
        paths.data,
        lambda pid, since: wait_ready(settings, pid, timeout, since=since),
    )


def server_argv(executable: str, paths: RedisPaths, port: int) -> list[str]:
    """How a data-holding redis-server of the stack starts: AOF on, 127.0.0.1 only."""
    return [
        executable,
        str(paths.config),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--dir",
        str(paths.data),
        # The AOF is the durability: every write reaches it, fsynced each second.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        # No RDB snapshots besides the AOF's own rewrites.
        "--save",
        "",
        "--logfile",
        "",
    ]


def wait_ready(settings: StreamSettings, pid: int, timeout: float, *, since: int = 0) -> None:
    """Wait until the server answers PING, or raise StackError with its log since byte `since`."""

    def answers(_: float) -> bool:
        try:
            return _ping(settings, 1.0)
        except redis.AuthenticationError as exc:
            raise StackError(
                f"Redis on {address(settings)} refuses the password: {exc}",
                "HEADRACE_REDIS_PASSWORD differs from the one it was started with; "
                "`headrace stack down`, then up again",
            ) from None

    supervisor.wait_answering(_server(settings), pid, timeout, answers, since=since)


def stop(settings: StreamSettings, *, timeout: float = 30.0) -> int | None:
    """Stop this stack's redis-server; on SIGTERM it fsyncs the AOF before exiting."""
    return supervisor.stop(_server(settings), timeout)
