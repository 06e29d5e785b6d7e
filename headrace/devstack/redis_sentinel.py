"""Redis that fails over, locally: a replica of the stack's redis-server and three sentinels.

`headrace stack up --redis sentinel` (HEADRACE_STACK_REDIS=sentinel) runs, besides the
primary that `redis_local` starts on the URL's port: a replica on the next port, and three
sentinels (Debian's redis-server in sentinel mode) on the three ports after it, agreeing
by a majority of two that the primary is down and promoting the replica. Every one of them
requires the stack's password. Folders `<stack_dir>/redis-replica`, `sentinel-<i>`; logs
and pid files beside the primary's.

Roles are the stack's on every start: the server on the URL's port starts as the primary
and the other as its replica, whichever was promoted before; sentinels start from a fresh
config (they rewrite it with what they learn while they run).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from headrace.devstack import redis_local, supervisor
from headrace.devstack.errors import StackError
from headrace.devstack.localproc import require_free, require_local
from headrace.devstack.redis_local import RedisPaths
from stream.settings import StreamSettings

DOWN_AFTER_MS = 1000
"""How long the primary must not answer before a sentinel thinks it down. Short, for a local
stack on one machine; a production network wants a few seconds against false failovers."""
FAILOVER_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Member:
    """A replica or sentinel of the stack."""

    role: str
    """"replica" or "sentinel"."""
    name: str
    """Its folder, pid file and log name: redis-replica, sentinel-1, ..."""
    host: str
    port: int
    paths: RedisPaths

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _paths(settings: StreamSettings, name: str) -> RedisPaths:
    root = Path(settings.stack_dir).expanduser().resolve()
    return RedisPaths(
        data=root / name,
        log=root / "logs" / f"{name}.log",
        pid_file=root / f"{name}.pid",
        config=root / name / ("sentinel.conf" if name.startswith("sentinel") else "redis.conf"),
    )


def members(settings: StreamSettings) -> list[Member]:
    """The replica and the sentinels: the replica on the port after the primary's."""
    host, port = settings.redis_host_port
    out = [Member("replica", "redis-replica", host, port + 1, _paths(settings, "redis-replica"))]
    for i, (s_host, s_port) in enumerate(settings.sentinel_addresses, start=1):
        name = f"sentinel-{i}"
        out.append(Member("sentinel", name, s_host, s_port, _paths(settings, name)))
    return out


def _server(member: Member) -> supervisor.Server:
    return redis_local.server_of(member.paths, f"Redis {member.name}", member.address)


def running_pid(member: Member) -> int | None:
    return supervisor.running_pid(_server(member))


def check_ports(settings: StreamSettings) -> None:
    """StackError when a member that does not run has no free 127.0.0.1 port. Those that
    run keep theirs: after a failover `up` starts the old primary beside them."""
    for member in members(settings):
        require_local(member.host, "HEADRACE_REDIS_SENTINELS")
        if running_pid(member) is None:
            require_free(member.port, f"Redis's {member.name}", "HEADRACE_REDIS_URL's port")


def _sentinel_lines(settings: StreamSettings, member: Member, password: str) -> list[str]:
    host, port = settings.redis_host_port
    service = settings.redis_sentinel_service
    return [
        f"port {member.port}",
        "bind 127.0.0.1",
        "daemonize no",
        'logfile ""',
        f"dir {member.paths.data}",
        f"requirepass {password}",
        # Sentinels talk to each other, and to the servers, with the same password.
        f"sentinel sentinel-pass {password}",
        f"sentinel monitor {service} {host} {port} 2",
        f"sentinel auth-pass {service} {password}",
        f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {service} 1",
    ]


def start_member(settings: StreamSettings, member: Member, *, timeout: float = 20.0) -> int:
    """Start the replica or a sentinel and wait until it answers PING; return its pid."""
    server = _server(member)
    executable = redis_local.check_server()
    password = redis_local.check_password(settings)
    require_free(member.port, f"Redis's {member.name}", "HEADRACE_REDIS_URL's port")
    member.paths.data.mkdir(parents=True, exist_ok=True)
    if member.role == "sentinel":
        redis_local.write_config(member.paths.config, _sentinel_lines(settings, member, password))
        argv = [executable, str(member.paths.config), "--sentinel"]
    else:
        redis_local.write_config(member.paths.config, redis_local.auth_lines(password))
        host, port = settings.redis_host_port
        argv = [
            *redis_local.server_argv(executable, member.paths, member.port),
            "--replicaof",
            host,
            str(port),
        ]

    def wait(pid: int, since: int) -> None:
        supervisor.wait_answering(
            server,
            pid,
            timeout,
            lambda probe_s: redis_local.ping_at(member.host, member.port, password, probe_s),
            since=since,
        )

    return supervisor.launch(server, argv, member.paths.data, wait)


def stop_member(member: Member, *, timeout: float = 30.0) -> int | None:
    return supervisor.stop(_server(member), timeout)


def wait_watching(settings: StreamSettings, timeout: float = 60.0) -> None:
    """Wait until the replica is in sync and every sentinel knows the replica and the other
    sentinels: only then can the group fail over. StackError when that takes too long."""
    password = settings.redis_password_value
    replica = members(settings)[0]
    sentinels = [m for m in members(settings) if m.role == "sentinel"]
    deadline = time.monotonic() + timeout
    problem: str | None = "nothing asked yet"
    while time.monotonic() < deadline:
        problem = _not_watching(settings, replica, sentinels, password)
        if problem is None:
            return
        time.sleep(0.2)
    raise StackError(
        f"the Redis sentinels are not ready for a failover after {timeout:.0f} s: {problem}",
        f"see {replica.paths.log.parent}/sentinel-*.log and redis-replica.log",
    )


def _client(member: Member, password: str | None) -> redis.Redis:
    return redis.Redis(
        host=member.host,
        port=member.port,
        password=password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


def _not_watching(
    settings: StreamSettings, replica: Member, sentinels: list[Member], password: str | None
) -> str | None:
    try:
        with _client(replica, password) as client:
            info = client.info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return "the replica is not in sync with the primary"
        for member in sentinels:
            with _client(member, password) as client:
                state = client.sentinel_master(settings.redis_sentinel_service)
            if int(state.get("num-slaves", 0)) < 1:
                return f"{member.name} does not know the replica yet"
            if int(state.get("num-other-sentinels", 0)) < len(sentinels) - 1:
                return f"{member.name} does not know the other sentinels yet"
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def role(host: str, port: int, password: str | None) -> str | None:
    """ "master" or "slave" as the server says (ROLE); None when it does not answer."""
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        reply = client.execute_command("ROLE")
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    first = reply[0]
    return first.decode() if isinstance(first, bytes) else str(first)
