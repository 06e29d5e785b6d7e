"""The production shape's addresses and configs, worked out without starting anything."""

from pathlib import Path

import pytest

from headrace.devstack import kafka_cluster, redis_sentinel, shape, stack
from headrace.devstack.errors import StackError
from stream.settings import StreamSettings
from stream.topics import replication


def shape_of(tmp_path: Path, **values: object) -> StreamSettings:
    base: dict[str, object] = {
        "kafka_bootstrap": "127.0.0.1:9092",
        "controller_port": 9093,
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_sentinels": "",
        "kafka_brokers": 1,
        "stack_redis": "single",
        "stack_dir": str(tmp_path),
    }
    base.update(values)
    return StreamSettings(**base)  # type: ignore[arg-type]


def test_three_brokers_widen_a_one_address_bootstrap(tmp_path: Path) -> None:
    settings = shape_of(tmp_path, kafka_brokers=3)
    assert settings.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    nodes = kafka_cluster.nodes(settings)
    assert [(n.id, n.port, n.controller_port) for n in nodes] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    assert len({n.paths.data for n in nodes}) == 3


def test_a_listed_bootstrap_is_kept_and_must_match_the_count(tmp_path: Path) -> None:
    listed = "127.0.0.1:9100,127.0.0.1:9200,127.0.0.1:9300"
    settings = shape_of(tmp_path, kafka_brokers=3, kafka_bootstrap=listed)
    assert [n.port for n in kafka_cluster.nodes(settings)] == [9100, 9200, 9300]
    two = shape_of(tmp_path, kafka_brokers=3, kafka_bootstrap="127.0.0.1:9100,127.0.0.1:9200")
    with pytest.raises(StackError, match="lists 2 addresses"):
        kafka_cluster.nodes(two)


def test_three_nodes_form_one_quorum_with_replication_3_and_min_isr_2(tmp_path: Path) -> None:
    settings = shape_of(tmp_path, kafka_brokers=3)
    second = kafka_cluster.nodes(settings)[1]
    config = dict(
        line.split("=", 1)
        for line in kafka_cluster.server_properties(settings, second).splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == (
        "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    )
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert config["default.replication.factor"] == "3"
    assert config["min.insync.replicas"] == "2"
    assert config["offsets.topic.replication.factor"] == "3"
    assert config["transaction.state.log.min.isr"] == "2"


def test_one_node_keeps_its_single_broker_layout(tmp_path: Path) -> None:
    settings = shape_of(tmp_path)
    (only,) = kafka_cluster.nodes(settings)
    assert only.paths.pid_file == tmp_path.resolve() / "kafka.pid"
    text = kafka_cluster.server_properties(settings, only)
    assert "controller.quorum.voters=1@127.0.0.1:9093\n" in text
    assert "min.insync.replicas=1\n" in text


@pytest.mark.parametrize(
    ("brokers", "replicas", "min_isr"), [(1, 1, "1"), (2, 2, "1"), (3, 3, "2"), (5, 3, "2")]
)
def test_topic_replication_follows_the_cluster(brokers: int, replicas: int, min_isr: str) -> None:
    assert replication(brokers) == (replicas, {"min.insync.replicas": min_isr})


def test_sentinel_shape_puts_replica_and_sentinels_above_the_primary(tmp_path: Path) -> None:
    settings = shape_of(tmp_path, stack_redis="sentinel")
    assert settings.redis_sentinels == "127.0.0.1:6381,127.0.0.1:6382,127.0.0.1:6383"
    members = redis_sentinel.members(settings)
    assert [(m.role, m.port) for m in members] == [
        ("replica", 6380),
        ("sentinel", 6381),
        ("sentinel", 6382),
        ("sentinel", 6383),
    ]
    explicit = shape_of(tmp_path, stack_redis="sentinel", redis_sentinels="127.0.0.1:7000")
    assert explicit.sentinel_addresses == [("127.0.0.1", 7000)]


def test_sentinels_need_two_votes_and_the_password(tmp_path: Path) -> None:
    settings = shape_of(tmp_path, stack_redis="sentinel", redis_sentinel_service="shop")
    sentinel = redis_sentinel.members(settings)[1]
    lines = redis_sentinel._sentinel_lines(settings, sentinel, "s3cret")
    assert "sentinel monitor shop 127.0.0.1 6379 2" in lines
    assert "sentinel auth-pass shop s3cret" in lines
    assert "requirepass s3cret" in lines
    assert "sentinel sentinel-pass s3cret" in lines
    assert "bind 127.0.0.1" in lines


def test_no_sentinels_means_the_urls_server(tmp_path: Path) -> None:
    assert shape_of(tmp_path).sentinel_addresses == []


@pytest.fixture
def no_shape_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """As an operator's shell: no HEADRACE_KAFKA_BROKERS or HEADRACE_STACK_REDIS."""
    monkeypatch.delenv("HEADRACE_KAFKA_BROKERS", raising=False)
    monkeypatch.delenv("HEADRACE_STACK_REDIS", raising=False)
    monkeypatch.delenv("HEADRACE_REDIS_SENTINELS", raising=False)


def unshaped(tmp_path: Path) -> StreamSettings:
    """Settings that choose no shape: the ports and the folder only."""
    return StreamSettings(
        kafka_bootstrap="127.0.0.1:9092",
        controller_port=9093,
        redis_url="redis://127.0.0.1:6379/0",
        stack_dir=str(tmp_path),
    )


def test_status_and_down_take_the_shape_up_started(tmp_path: Path, no_shape_in_env: None) -> None:
    assert shape.as_started(unshaped(tmp_path)).kafka_brokers == 1  # nothing recorded
    shape.record(shape_of(tmp_path, kafka_brokers=3, stack_redis="sentinel"))

    started = shape.as_started(unshaped(tmp_path))

    assert (started.kafka_brokers, started.stack_redis) == (3, "sentinel")
    assert started.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert started.redis_sentinels == "127.0.0.1:6381,127.0.0.1:6382,127.0.0.1:6383"
    # Nothing runs here: every node and member of the recorded shape is listed, stopped.
    now = stack.status(unshaped(tmp_path))
    assert [s.address for s in now.services if s.name == "kafka"] == [
        "127.0.0.1:9092 (ctl 9093)",
        "127.0.0.1:9094",
        "127.0.0.1:9096",
    ]
    assert [s.name for s in now.more[2:]] == ["replica", "sent1", "sent2", "sent3"]
    assert not now.any_running


def test_a_shape_chosen_by_argument_or_environment_wins_over_the_record(
    tmp_path: Path, no_shape_in_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    shape.record(shape_of(tmp_path, kafka_brokers=3, stack_redis="sentinel"))
    chosen = shape.as_started(shape_of(tmp_path, kafka_brokers=1, stack_redis="single"))
    assert (chosen.kafka_brokers, chosen.stack_redis) == (1, "single")
    monkeypatch.setenv("HEADRACE_KAFKA_BROKERS", "1")
    from_env = shape.as_started(unshaped(tmp_path))
    assert (from_env.kafka_brokers, from_env.stack_redis) == (1, "sentinel")
