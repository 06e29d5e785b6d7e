"""The local stack: one Kafka broker and one Redis server on 127.0.0.1, without Docker.

`up`, `down` and `status` are what `headrace stack up|down|status` runs. `up`
is idempotent: services that already run and answer are left alone. The
services themselves live in `kafka_local` and `redis_local`.
"""

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from kafka.errors import KafkaError

from headrace.devstack import kafka_jars, kafka_local, localproc, redis_local
from headrace.devstack.errors import StackError
from stream.probe import answering
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
        return f"{self.name:<6} {self.address:<24} {state}"


@dataclass(frozen=True)
class StackStatus:
    kafka: ServiceStatus
    redis: ServiceStatus
    stack_dir: str
    topics_created: tuple[str, ...] = ()

    @property
    def services(self) -> tuple[ServiceStatus, ServiceStatus]:
        return (self.kafka, self.redis)

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
    return f"{kafka_local.address(settings)} (ctl {settings.controller_port})"


def status(settings: StreamSettings) -> StackStatus:
    """What runs now; each running service is probed once (metadata request, PING)."""
    kafka_pid = kafka_local.running_pid(settings)
    redis_pid = redis_local.running_pid(settings)
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
        ),
        stack_dir=_stack_dir(settings),
    )


def _check_prerequisites(
    settings: StreamSettings, cache_dir: str | Path, start_kafka: bool, start_redis: bool
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
    if start_kafka:
        kafka_jars.check_java()
        kafka_jars.check_maven(cache_dir)
        kafka_local.check_ports(settings)
    if start_redis:
        redis_local.check_server()
        redis_local.check_password(settings)
        redis_local.check_port(settings)


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
    kafka_pid = kafka_local.running_pid(settings)
    redis_pid = redis_local.running_pid(settings)
    _check_prerequisites(settings, cache, kafka_pid is None, redis_pid is None)

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
        created = _create_topics(settings)
    except BaseException:
        for stop in reversed(started):
            stop()
        raise
    return StackStatus(kafka_status, redis_status, _stack_dir(settings), tuple(created))


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
    """Stop both services (SIGTERM, SIGKILL after `timeout`); stopping a stopped one is fine."""
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
    return StackStatus(results["kafka"], results["redis"], _stack_dir(settings))
