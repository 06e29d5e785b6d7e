"""One local Kafka 4 broker in KRaft mode (combined broker and controller), without Docker.

The jars and Java come from `stream.kafka_jars`.
Config, data, logs and the pid file live under `settings.stack_dir`. Every
listener binds to 127.0.0.1 only.

Process helpers (pid files, detached start, bounded stop, port checks) are
in `stream.localproc`, shared with `stream.redis_local`.
"""

import base64
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from stream.errors import StackError
from stream.kafka_jars import check_java, ensure_libs, resource
from stream.localproc import (
    cmdline,
    exited,
    log_size,
    log_tail,
    read_pid,
    require_free,
    require_local,
    spawn,
    tcp_open,
    terminate,
)
from stream.settings import StreamSettings


@dataclass(frozen=True)
class KafkaPaths:
    """Where one stack keeps its broker's files; absolute, so pid checks can match cmdlines."""

    root: Path
    config: Path
    log4j: Path
    data: Path
    logs: Path
    out: Path
    pid_file: Path

    @classmethod
    def of(cls, settings: StreamSettings) -> "KafkaPaths":
        root = Path(settings.stack_dir).expanduser().resolve()
        logs = root / "logs"
        return cls(
            root=root,
            config=root / "kafka" / "server.properties",
            log4j=root / "kafka" / "log4j2.properties",
            data=root / "kafka" / "data",
            logs=logs,
            out=logs / "kafka.out",
            pid_file=root / "kafka.pid",
        )

    @property
    def server_log(self) -> Path:
        return self.logs / "kafka" / "server.log"


def address(settings: StreamSettings) -> str:
    host, port = settings.kafka_host_port
    return f"{host}:{port}"


def check_ports(settings: StreamSettings) -> None:
    """StackError when the broker's or controller's port is not a free 127.0.0.1 port."""
    host, port = settings.kafka_host_port
    require_local(host, "HEADRACE_KAFKA_BOOTSTRAP")
    if port == settings.controller_port:
        raise StackError(
            f"Kafka's client and controller ports are both {port}",
            "set HEADRACE_CONTROLLER_PORT to another port",
        )
    require_free(port, "Kafka", "HEADRACE_KAFKA_BOOTSTRAP=127.0.0.1:<port>")
    require_free(settings.controller_port, "Kafka's controller", "HEADRACE_CONTROLLER_PORT=<port>")


# --- the broker ---------------------------------------------------------------------------------


def server_properties(settings: StreamSettings, paths: KafkaPaths) -> str:
    _, port = settings.kafka_host_port
    cport = settings.controller_port
    lines = [
        "# Written by headrace (stream/kafka_local.py) on every start; edits are lost.",
        "process.roles=broker,controller",
        "node.id=1",
        # A static quorum (not a formatted --standalone one) keeps working when
        # HEADRACE_CONTROLLER_PORT changes between starts: the voter address is
        # read from this file each time instead of from the metadata log.
        f"controller.quorum.voters=1@127.0.0.1:{cport}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={paths.data}",
        f"num.partitions={settings.partitions}",
        # One broker: every internal topic must be satisfiable by a single replica.
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Kafka's default, stated: the largest record batch a topic takes unless it sets its
        # own max.message.bytes. The learner reads both (stream/limits.py).
        "message.max.bytes=1048588",
        # Fewer offset partitions make the first consumer group (in every test run) quicker.
        "offsets.topic.num.partitions=10",
        # Consumers join at once instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms=0",
        # After a crash the restarted broker must wait out its dead incarnation's
        # session before it may register again: 5 s instead of the default 9 s.
        "broker.heartbeat.interval.ms=1000",
        "broker.session.timeout.ms=5000",
    ]
    return "\n".join(lines) + "\n"


def _java_argv(java: str, settings: StreamSettings, paths: KafkaPaths, libs: Path) -> list[str]:
    heap = settings.kafka_heap
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.log4j}",
        f"-Dkafka.logs.dir={paths.logs / 'kafka'}",
        "-cp",
        f"{libs}/*",
    ]


def _cluster_id() -> str:
    # Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, unpadded; Kafka
    # itself never hands out ids starting with "-" (they read as options).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _format_storage(java: str, settings: StreamSettings, paths: KafkaPaths, libs: Path) -> None:
    if (paths.data / "meta.properties").exists():
        return
    argv = [
        *_java_argv(java, settings, paths, libs),
        "kafka.tools.StorageTool",
        "format",
        "-t",
        _cluster_id(),
        "-c",
        str(paths.config),
        "-g",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StackError("formatting Kafka's storage took over 120 s", str(paths.data)) from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise StackError(
            f"formatting Kafka's storage in {paths.data} failed "
            f"(exit {done.returncode}):\n{output}",
            f"if that folder holds an old or broken broker, remove {paths.data} (its data is lost)",
        )


def running_pid(settings: StreamSettings) -> int | None:
    """Pid of this stack's broker if it runs; a stale pid file is removed."""
    paths = KafkaPaths.of(settings)
    pid = read_pid(paths.pid_file)
    if pid is None:
        return None
    argv = cmdline(pid)
    if exited(pid) or "kafka.Kafka" not in argv or str(paths.config) not in argv:
        paths.pid_file.unlink(missing_ok=True)
        return None
    return pid


def answering(settings: StreamSettings, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request (not just accepts connections)."""
    host, port = settings.kafka_host_port
    # A plain connect first: kafka-python logs every refused connection loudly.
    if not tcp_open(host, port, timeout):
        return False
    millis = max(int(timeout * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=f"{host}:{port}",
            client_id="headrace-stack",
            request_timeout_ms=millis,
            bootstrap_timeout_ms=millis,
            reconnect_backoff_max_ms=200,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    except (KafkaError, OSError):
        return False
    return True


def start(
    settings: StreamSettings, *, cache_dir: str | Path | None = None, timeout: float = 60.0
) -> int:
    """Start this stack's broker and wait until it answers; return its pid.

    `cache_dir` is the stack folder whose jars (and Maven cache) to use, by
    default `settings.stack_dir`; tests point it at a shared one. Raises
    StackError if the broker already runs (see `running_pid`) or does not come up.
    """
    paths = KafkaPaths.of(settings)
    if (pid := running_pid(settings)) is not None:
        raise StackError(f"Kafka already runs with pid {pid}", "headrace stack down stops it")
    java = check_java()
    check_ports(settings)
    libs = ensure_libs(settings.kafka_cache_dir if cache_dir is None else cache_dir)
    paths.config.parent.mkdir(parents=True, exist_ok=True)
    (paths.logs / "kafka").mkdir(parents=True, exist_ok=True)
    paths.config.write_text(server_properties(settings, paths))
    paths.log4j.write_bytes(resource("log4j2.properties"))
    _format_storage(java, settings, paths, libs)
    argv = [*_java_argv(java, settings, paths, libs), "kafka.Kafka", str(paths.config)]
    since = log_size(paths.out)
    pid = spawn(argv, log=paths.out, cwd=paths.root)
    paths.pid_file.write_text(f"{pid}\n")
    try:
        wait_ready(settings, pid, timeout, since=since)
    except BaseException:
        # Never leave a half-started broker behind a failed (or interrupted) start.
        terminate(pid, 10.0)
        paths.pid_file.unlink(missing_ok=True)
        raise
    return pid


def wait_ready(settings: StreamSettings, pid: int, timeout: float, *, since: int = 0) -> None:
    """Wait until the broker with this pid answers, or raise StackError with its output's tail.

    `since` is where this start's output begins in the (appended) output file.
    Its stdout holds the JVM's own errors and the broker's warnings and errors;
    server.log, named in the hint, has everything.
    """
    paths = KafkaPaths.of(settings)
    deadline = time.monotonic() + timeout
    while True:
        if exited(pid):
            raise StackError(
                f"Kafka (pid {pid}) exited during start-up:\n{log_tail(paths.out, since=since)}",
                f"full logs: {paths.out} and {paths.server_log}",
            )
        remaining = deadline - time.monotonic()
        if answering(settings, timeout=min(3.0, max(remaining, 0.5))):
            return
        if time.monotonic() >= deadline:
            raise StackError(
                f"Kafka (pid {pid}) did not answer on {address(settings)} within {timeout:.0f} s:\n"
                f"{log_tail(paths.out, since=since)}",
                f"full logs: {paths.out} and {paths.server_log}; "
                f"a larger HEADRACE_KAFKA_HEAP may help on a busy machine",
            )
        time.sleep(0.25)


def stop(settings: StreamSettings, *, timeout: float = 30.0) -> int | None:
    """Stop this stack's broker (SIGTERM, SIGKILL after `timeout`); return its pid if it ran."""
    paths = KafkaPaths.of(settings)
    pid = running_pid(settings)
    if pid is not None:
        terminate(pid, timeout)
    paths.pid_file.unlink(missing_ok=True)
    return pid
