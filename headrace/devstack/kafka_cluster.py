"""The local Kafka cluster's shape, worked out without starting anything.

One node by default; HEADRACE_KAFKA_BROKERS=3 makes three, every one a combined broker
and controller and a voter of a static KRaft quorum, so the cluster keeps working (and
stays writable at min ISR 2) when one dies. Here: the nodes' addresses, ports and folders,
each node's server.properties, and the cluster id every node is formatted with.
`kafka_local` starts and stops them.
"""

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

from headrace.devstack.errors import StackError
from headrace.devstack.localproc import require_free, require_local
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
    def of(cls, settings: StreamSettings, node: int | None = None) -> "KafkaPaths":
        """The single broker's paths (`node` None), or those of node `node` of several."""
        root = Path(settings.stack_dir).expanduser().resolve()
        name = "kafka" if node is None else f"kafka-{node}"
        logs = root / "logs"
        return cls(
            root=root,
            config=root / name / "server.properties",
            log4j=root / name / "log4j2.properties",
            data=root / name / "data",
            logs=logs,
            out=logs / f"{name}.out",
            pid_file=root / f"{name}.pid",
        )

    @property
    def server_log(self) -> Path:
        return self.logs / self.config.parent.name / "server.log"


@dataclass(frozen=True)
class Node:
    """One broker (and controller) of the local stack."""

    id: int
    """Kafka's node.id, from 1."""
    host: str
    port: int
    controller_port: int
    paths: KafkaPaths

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def nodes(settings: StreamSettings) -> list[Node]:
    """The stack's nodes: HEADRACE_KAFKA_BROKERS of them, on the bootstrap's addresses."""
    count = settings.kafka_brokers
    addresses = settings.kafka_addresses
    if count == 1:
        host, port = addresses[0]
        return [Node(1, host, port, settings.controller_port, KafkaPaths.of(settings))]
    if len(addresses) != count:
        raise StackError(
            f"HEADRACE_KAFKA_BROKERS is {count} but HEADRACE_KAFKA_BOOTSTRAP lists "
            f"{len(addresses)} addresses",
            "list one address per broker, or just the first (the others follow it, 2 ports apart)",
        )
    return [
        Node(
            i + 1,
            host,
            port,
            settings.controller_port + 2 * i,
            KafkaPaths.of(settings, i + 1),
        )
        for i, (host, port) in enumerate(addresses)
    ]


def node(settings: StreamSettings, node_id: int) -> Node:
    return next(n for n in nodes(settings) if n.id == node_id)


def check_ports(settings: StreamSettings, only: list[Node] | None = None) -> None:
    """StackError when a node's client or controller port is not a free 127.0.0.1 port."""
    every = nodes(settings)
    ports = [p for n in every for p in (n.port, n.controller_port)]
    if len(set(ports)) != len(ports):
        raise StackError(
            f"Kafka's client and controller ports overlap: {ports}",
            "set HEADRACE_CONTROLLER_PORT (and HEADRACE_KAFKA_BOOTSTRAP) so they differ",
        )
    for n in every if only is None else only:
        require_local(n.host, "HEADRACE_KAFKA_BOOTSTRAP")
        require_free(n.port, "Kafka", "HEADRACE_KAFKA_BOOTSTRAP=127.0.0.1:<port>")
        require_free(n.controller_port, "Kafka's controller", "HEADRACE_CONTROLLER_PORT=<port>")


def server_properties(settings: StreamSettings, node: Node) -> str:
    every = nodes(settings)
    port, cport = node.port, node.controller_port
    # Replication 3 and min ISR 2 with three or more nodes (an acknowledged write survives
    # the loss of any one broker, which may die without stopping writes); else all nodes.
    replicas = min(3, len(every))
    min_isr = 2 if replicas >= 3 else 1
    voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in every)
    lines = [
        "# Written by headrace (headrace/devstack/kafka_cluster.py) at each start; edits are lost.",
        "process.roles=broker,controller",
        f"node.id={node.id}",
        # A static quorum (not a formatted --standalone one) keeps working when
        # HEADRACE_CONTROLLER_PORT changes between starts: the voter addresses are
        # read from this file each time instead of from the metadata log.
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={node.paths.data}",
        f"num.partitions={settings.partitions}",
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={replicas}",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
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


def _new_cluster_id() -> str:
    # Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, unpadded; Kafka
    # itself never hands out ids starting with "-" (they read as options).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def cluster_id(settings: StreamSettings) -> str:
    """The id every node of this stack is formatted with, made once and kept beside them."""
    path = Path(settings.stack_dir).expanduser().resolve() / "kafka-cluster.id"
    if settings.kafka_brokers == 1:
        return _new_cluster_id()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_new_cluster_id() + "\n")
    return path.read_text().strip()
