"""One local Kafka 4 broker in KRaft mode (combined broker and controller), without Docker.

The jars and Java come from `kafka_jars`. Config, data, logs and the pid file live
under `settings.stack_dir`. Every listener binds to 127.0.0.1 only. Starting, waiting
and stopping are `supervisor`'s, shared with `redis_local`.
"""

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from headrace.devstack import supervisor
from headrace.devstack.errors import StackError
from headrace.devstack.kafka_jars import check_java, ensure_libs, resource
from headrace.devstack.localproc import cmdline, require_free, require_local
from stream.probe import answering
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
        "# Written by headrace (headrace/devstack/kafka_local.py) on every start; edits are lost.",
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


def _server(settings: StreamSettings) -> supervisor.Server:
    paths = KafkaPaths.of(settings)

    def is_ours(pid: int) -> bool:
        argv = cmdline(pid)
        return "kafka.Kafka" in argv and str(paths.config) in argv

    return supervisor.Server(
        name="Kafka",
        address=address(settings),
        pid_file=paths.pid_file,
        output=paths.out,
        logs_hint=f"full logs: {paths.out} and {paths.server_log}",
        is_ours=is_ours,
    )


def running_pid(settings: StreamSettings) -> int | None:
    """Pid of this stack's broker if it runs; a stale pid file is removed."""
    return supervisor.running_pid(_server(settings))


def start(
    settings: StreamSettings, *, cache_dir: str | Path | None = None, timeout: float = 60.0
) -> int:
    """Start this stack's broker and wait until it answers; return its pid.

    `cache_dir` is the stack folder whose jars (and Maven cache) to use, by
    default `settings.kafka_cache_dir`; tests point it at a shared one. Raises
    StackError if the broker already runs (see `running_pid`) or does not come up.
    """
    paths = KafkaPaths.of(settings)
    server = _server(settings)
    if (pid := supervisor.running_pid(server)) is not None:
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
    return supervisor.launch(
        server,
        argv,
        paths.root,
        lambda pid, since: wait_ready(settings, pid, timeout, since=since),
    )


def wait_ready(settings: StreamSettings, pid: int, timeout: float, *, since: int = 0) -> None:
    """Wait until the broker with this pid answers, or raise StackError with its output's tail.

    `since` is where this start's output begins in the (appended) output file.
    Its stdout holds the JVM's own errors and the broker's warnings and errors;
    server.log, named in the hint, has everything.
    """
    supervisor.wait_answering(
        _server(settings),
        pid,
        timeout,
        lambda probe_s: answering(settings, timeout=probe_s),
        since=since,
        poll_s=0.25,
        slow_hint="a larger HEADRACE_KAFKA_HEAP may help on a busy machine",
    )


def stop(settings: StreamSettings, *, timeout: float = 30.0) -> int | None:
    """Stop this stack's broker (SIGTERM, SIGKILL after `timeout`); return its pid if it ran."""
    return supervisor.stop(_server(settings), timeout)
