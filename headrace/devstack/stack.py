"""The local stack: Kafka and Redis on 127.0.0.1, without Docker.

One broker and one Redis server by default; HEADRACE_KAFKA_BROKERS=3 (`--brokers 3`) runs
three brokers, HEADRACE_STACK_REDIS=sentinel (`--redis sentinel`) a replica and three
sentinels beside the Redis primary. `up`, `down` and `status` are what `headrace stack
up|down|status` runs. `up` is idempotent: services that already run and answer are left
alone. The services themselves live in `kafka_local` (the cluster's shape in `kafka_cluster`),
`redis_local` and `redis_sentinel`.
"""

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kafka.errors import KafkaError

from headrace.devstack import (
    kafka_cluster,
    kafka_jars,
    kafka_local,
    localproc,
    redis_local,
    redis_sentinel,
    shape,
)
from headrace.devstack.errors import StackError
from stream.probe import answering, answering_at
from stream.settings import StreamSettings
from stream.topics import ensure_topics

STARTED = "started"
ALREADY_RUNNING = "already running"
STOPPED = "stopped"
NOT_RUNNING = "was not running"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    answering: bool
    action: str = ""
    """What this call did to the service (STARTED, ALREADY_RUNNING, ...); empty for `status`."""
    seconds: float | None = None
    """How long starting or stopping took."""
    role: str = ""
    """A Redis server's role behind Sentinel as it says it now: "master" or "slave"."""

    @property
    def running(self) -> bool:
        return self.pid is not None

    def line(self) -> str:
        took = f" in {self.seconds:.1f} s" if self.seconds is not None else ""
        if self.running:
            state = f"running, pid {self.pid}" + ("" if self.answering else ", NOT answering")
        elif self.action == STOPPED:
            state = f"stopped{took}"
        else:
            state = "stopped"
        if self.action and self.action != STOPPED:
            state += f" ({self.action}{took})"
        if self.role:
            state += ", primary" if self.role == "master" else ", replica"
        return f"{self.name:<6} {self.address:<24} {state}"


@dataclass(frozen=True)
class StackStatus:
    kafka: ServiceStatus
    redis: ServiceStatus
    stack_dir: str
    topics_created: tuple[str, ...] = ()
    more: tuple[ServiceStatus, ...] = ()
    """The other Kafka brokers, the Redis replica and the sentinels, where the stack has them."""

    @property
    def services(self) -> tuple[ServiceStatus, ...]:
        return (self.kafka, self.redis, *self.more)

    @property
    def all_running(self) -> bool:
        return all(service.running and service.answering for service in self.services)

    @property
    def any_running(self) -> bool:
        return any(service.running for service in self.services)

    def lines(self) -> list[str]:
        lines = [service.line() for service in self.services]
        if self.topics_created:
            lines.append("topics created: " + ", ".join(self.topics_created))
        if all(service.action == ALREADY_RUNNING for service in self.services):
            lines.append("nothing to do: the stack was already up")
        lines.append(f"stack dir {self.stack_dir} (logs in {Path(self.stack_dir) / 'logs'})")
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _stack_dir(settings: StreamSettings) -> str:
    return str(Path(settings.stack_dir).expanduser().resolve())


def _kafka_address(settings: StreamSettings) -> str:
    first = kafka_cluster.nodes(settings)[0]
    return f"{first.address} (ctl {first.controller_port})"


def status(settings: StreamSettings) -> StackStatus:
    """What runs now; each running service is probed once (metadata request, PING). Where
    `settings` choose no shape, the one the last `up` in their folder started."""
    settings = shape.as_started(settings)
    kafka_pid = kafka_local.running_pid(settings)
    redis_pid = redis_local.running_pid(settings)
    more: list[ServiceStatus] = []
    for address, pid in kafka_local.running(settings)[1:]:
        node_host, _, node_port = address.rpartition(":")
        up = pid is not None and int(node_port) > 0 and answering_at(node_host, int(node_port))
        more.append(ServiceStatus("kafka", address, pid, up))
    for member in _redis_members(settings):
        pid = redis_sentinel.running_pid(member)
        up = pid is not None and redis_local.ping_at(
            member.host, member.port, settings.redis_password_value, 1.0
        )
        role = _role(settings, member.host, member.port) if member.role == "replica" else ""
        more.append(ServiceStatus(_member_label(member), member.address, pid, up, role=role))
    redis_host, redis_port = settings.redis_host_port
    return StackStatus(
        kafka=ServiceStatus(
            "kafka",
            _kafka_address(settings),
            kafka_pid,
            kafka_pid is not None and answering(settings),
        ),
        redis=ServiceStatus(
            "redis",
            redis_local.address(settings),
            redis_pid,
            redis_pid is not None and redis_local.answering(settings),
            role=_role(settings, redis_host, redis_port) if redis_pid is not None else "",
        ),
        stack_dir=_stack_dir(settings),
        more=tuple(more),
    )


def _redis_members(settings: StreamSettings) -> list[redis_sentinel.Member]:
    """The replica and sentinels of this stack's shape, or left running from another."""
    if settings.stack_redis == "sentinel":
        return redis_sentinel.members(settings)
    shaped = settings.model_copy(update={"stack_redis": "sentinel"})
    host, port = settings.redis_host_port
    shaped.redis_sentinels = ",".join(f"{host}:{port + 2 + i}" for i in range(3))
    return [m for m in redis_sentinel.members(shaped) if redis_sentinel.running_pid(m)]


def _role(settings: StreamSettings, host: str, port: int) -> str:
    """Which of primary and replica a server is now: a failover swaps them."""
    if settings.stack_redis != "sentinel" and not settings.sentinel_addresses:
        return ""
    return redis_sentinel.role(host, port, settings.redis_password_value) or ""


def _member_label(member: redis_sentinel.Member) -> str:
    return "replica" if member.role == "replica" else member.name.replace("sentinel-", "sent")


def _check_prerequisites(
    settings: StreamSettings,
    cache_dir: str | Path,
    kafka_nodes: list[kafka_cluster.Node],
    start_redis: bool,
) -> None:
    """Everything that can be known wrong before starting anything, so a failure starts nothing."""
    _, kafka_port = settings.kafka_host_port
    _, redis_port = settings.redis_host_port
    if redis_port in (kafka_port, settings.controller_port):
        raise StackError(
            f"Redis and Kafka are both configured for port {redis_port}",
            "give HEADRACE_REDIS_URL, HEADRACE_KAFKA_BOOTSTRAP and HEADRACE_CONTROLLER_PORT "
            "three different ports",
        )
    if kafka_nodes:
        kafka_jars.check_java()
        kafka_jars.check_maven(cache_dir)
        kafka_cluster.check_ports(settings, only=kafka_nodes)
    if start_redis:
        redis_local.check_server()
        redis_local.check_password(settings)
        redis_local.check_port(settings)
        if settings.stack_redis == "sentinel":
            redis_sentinel.check_ports(settings)


def up(
    settings: StreamSettings,
    *,
    cache_dir: str | Path | None = None,
    kafka_timeout: float = 60.0,
    redis_timeout: float = 20.0,
) -> StackStatus:
    """Start whatever of the stack is not running, create the topics, and report.

    `cache_dir` is a stack folder whose Kafka jars and Maven cache to use
    (default: `settings.kafka_cache_dir`), so several stacks share one download.
    On failure, whatever this call started is stopped again.
    """
    # Two `up`s (or an `up` and a `down`) at once would race on the pid files.
    with _stack_lock(settings):
        return _up(settings, cache_dir, kafka_timeout, redis_timeout)


def _stack_lock(settings: StreamSettings) -> AbstractContextManager[None]:
    return localproc.locked(Path(_stack_dir(settings)) / ".stack.lock")


def _up(
    settings: StreamSettings,
    cache_dir: str | Path | None,
    kafka_timeout: float,
    redis_timeout: float,
) -> StackStatus:
    cache = settings.kafka_cache_dir if cache_dir is None else cache_dir
    missing = kafka_local.missing_nodes(settings)
    # Any node down (one killed, say): start those, and report the first as started.
    kafka_pid = None if missing else kafka_local.running_pid(settings)
    redis_pid = redis_local.running_pid(settings)
    _check_prerequisites(settings, cache, missing, redis_pid is None)

    started: list[Callable[[], object]] = []
    try:
        redis_status = _bring_up(
            "redis",
            redis_local.address(settings),
            redis_pid,
            start=lambda: redis_local.start(settings, timeout=redis_timeout),
            wait=lambda pid: redis_local.wait_ready(settings, pid, redis_timeout),
        )
        if redis_status.action == STARTED:
            started.append(lambda: redis_local.stop(settings))
        kafka_status = _bring_up(
            "kafka",
            _kafka_address(settings),
            kafka_pid,
            start=lambda: kafka_local.start(settings, cache_dir=cache, timeout=kafka_timeout),
            wait=lambda pid: kafka_local.wait_ready(settings, pid, kafka_timeout),
        )
        if kafka_status.action == STARTED:
            started.append(lambda: kafka_local.stop(settings))
        more = _more_kafka(settings, kafka_status)
        more += _redis_group(settings, started, redis_timeout)
        created = _create_topics(settings)
        shape.record(settings)
    except BaseException:
        for stop in reversed(started):
            stop()
        raise
    return StackStatus(
        kafka_status, redis_status, _stack_dir(settings), tuple(created), tuple(more)
    )


def _more_kafka(settings: StreamSettings, first: ServiceStatus) -> list[ServiceStatus]:
    """The other brokers' lines: `kafka_local.start` starts (or waits for) them all."""
    out = []
    for node in kafka_cluster.nodes(settings)[1:]:
        pid = kafka_local.running_pid(settings, node.id)
        out.append(ServiceStatus("kafka", node.address, pid, pid is not None, first.action))
    return out


def _redis_group(
    settings: StreamSettings, started: list[Callable[[], object]], timeout: float
) -> list[ServiceStatus]:
    """Start the replica and the sentinels where HEADRACE_STACK_REDIS asks for them."""
    if settings.stack_redis != "sentinel":
        return []
    out = []
    for member in redis_sentinel.members(settings):
        out.append(
            _bring_up(
                _member_label(member),
                member.address,
                redis_sentinel.running_pid(member),
                start=partial(redis_sentinel.start_member, settings, member, timeout=timeout),
                wait=lambda pid: None,
            )
        )
        if out[-1].action == STARTED:
            started.append(partial(redis_sentinel.stop_member, member))
    redis_sentinel.wait_watching(settings)
    return out


def _bring_up(
    name: str,
    address: str,
    pid: int | None,
    *,
    start: Callable[[], int],
    wait: Callable[[int], None],
) -> ServiceStatus:
    began = time.monotonic()
    if pid is None:
        pid = start()
        return ServiceStatus(name, address, pid, True, STARTED, time.monotonic() - began)
    # Ours and alive, but maybe still starting (another `up` running right now): wait for it.
    wait(pid)
    return ServiceStatus(name, address, pid, True, ALREADY_RUNNING)


def _create_topics(settings: StreamSettings) -> list[str]:
    try:
        return ensure_topics(settings)
    except KafkaError as exc:
        raise StackError(
            f"Kafka is up but creating the topics {', '.join(settings.topics)} failed: {exc!r}",
            f"see {Path(settings.stack_dir) / 'logs' / 'kafka' / 'server.log'}",
        ) from exc


def down(settings: StreamSettings, *, timeout: float = 30.0) -> StackStatus:
    """Stop both services (SIGTERM, SIGKILL after `timeout`); stopping a stopped one is fine.
    Where `settings` choose no shape, the one the last `up` in their folder started."""
    settings = shape.as_started(settings)
    if not Path(_stack_dir(settings)).is_dir():
        # Nothing was ever started here; taking the lock would create the folder.
        return _down(settings, timeout)
    with _stack_lock(settings):
        return _down(settings, timeout)


def _down(settings: StreamSettings, timeout: float) -> StackStatus:
    results: dict[str, ServiceStatus] = {}
    errors: list[StackError] = []
    stops: tuple[tuple[str, str, Callable[[], int | None]], ...] = (
        ("kafka", _kafka_address(settings), lambda: kafka_local.stop(settings, timeout=timeout)),
        (
            "redis",
            redis_local.address(settings),
            lambda: redis_local.stop(settings, timeout=timeout),
        ),
    )
    more: list[ServiceStatus] = []
    # The sentinels first: stopping the primary under them would start a failover.
    for member in reversed(_redis_members(settings)):
        began = time.monotonic()
        try:
            pid = redis_sentinel.stop_member(member, timeout=timeout)
        except StackError as exc:
            errors.append(exc)
            continue
        if pid is not None:
            label = _member_label(member)
            more.append(
                ServiceStatus(label, member.address, None, False, STOPPED, time.monotonic() - began)
            )
    for name, address, stop in stops:
        began = time.monotonic()
        try:
            pid = stop()
        except StackError as exc:
            errors.append(exc)
            continue
        action, took = (
            (STOPPED, time.monotonic() - began) if pid is not None else (NOT_RUNNING, None)
        )
        results[name] = ServiceStatus(name, address, None, False, action, took)
    if errors:
        raise errors[0]
    return StackStatus(results["kafka"], results["redis"], _stack_dir(settings), more=tuple(more))
