"""`headrace status`: what it reads from the real Redis and Kafka, and how it fails."""

import json
import os
import subprocess

import pytest
import redis

from guards.alerts import Alert
from headrace.sim.simulator import SimulatorConfig, generate
from learner.metrics import ProgressiveMetrics
from learner.models import build_model
from learner.status import gather, render
from learner.variant import Variant
from stream.settings import StreamSettings
from tests.learner.harness import InProcessLearner, send
from tests.support import free_port, headrace, stack_env

pytestmark = pytest.mark.integration


def _cli(settings: StreamSettings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    environ.update(stack_env(settings))
    environ.update({"HEADRACE_TOPIC_EVENTS": settings.topic_events, **env})
    return headrace(environ, "status", *args)


def test_a_learning_shard_its_lag_variants_quarantine_and_alerts(
    one_partition: StreamSettings, redis_client: redis.Redis
) -> None:
    settings = one_partition
    records = list(generate(SimulatorConfig(seed=4, count=1_000, n_users=100, n_items=50)))
    send(settings, records)
    learner = InProcessLearner(
        settings, redis_client, {"main": "logreg", "tree": "tree"}, n_partitions=1, join_window_s=10
    )
    learner.process(records[:600])
    learner.learner.variants["blank"] = Variant(
        "blank", "logreg", build_model("logreg"), ProgressiveMetrics(10)
    )
    learner.learner.counts["quarantined_rate_limit"] += 3
    learner.learner.counts["misrouted"] += 2
    alert = Alert(
        "main:tree:adwin:loss:1:2", 1767225600.0, "main", "tree", "adwin", "loss", 0.4, 0.2, 500,
        "adwin: the loss went up",
    )  # fmt: skip
    learner.learner.alerts.append(alert)
    learner.publish()

    status = gather(settings)
    assert status.problem is None
    (shard,) = status.shards
    assert shard.holder == learner.lease.owner_id and shard.generation == learner.lease.generation
    assert shard.version == 1 and shard.offsets == {0: 600} and shard.lag == {0: 400}
    learned = {v.name: v.n_learned for v in shard.variants}
    assert learned == {n: v.n_learned for n, v in learner.learner.variants.items()}
    assert learned["main"] > 0
    assert shard.quarantined == {"rate_limit": 3}
    assert shard.misrouted == 2
    assert [a["id"] for a in status.alerts] == [alert.id]

    text = render(status)
    assert f"shard main: learner {learner.lease.owner_id} (generation" in text
    assert "version 1, published" in text and "lag 400, offsets 0:600" in text
    assert f"tree           tree     {learned['tree']:>9}" in text
    assert "AUC roll/all     calibration roll/all" in text
    # A variant with nothing scored: its undefined values are left out, shown as "-".
    assert next(v for v in shard.variants if v.name == "blank").metrics == {}
    assert "blank          logreg           0  - / -              - / -            - / -" in text
    assert "quarantined: rate_limit 3; dead letters: none; misrouted: 2" in text
    assert "main/tree adwin: adwin: the loss went up" in text
    assert len(text.splitlines()) < 25  # one screen

    shown = _cli(settings, "--json")
    assert shown.returncode == 0, shown.stderr
    facts = json.loads(shown.stdout)
    assert facts["shards"][0]["lag"] == {"0": 400}
    assert facts["shards"][0]["misrouted"] == 2
    assert facts["alerts"][0]["message"] == "adwin: the loss went up"
    learner.close()


def test_a_shard_nobody_learns(topics: StreamSettings, redis_client: redis.Redis) -> None:
    shown = _cli(topics)
    assert shown.returncode == 0, shown.stderr
    assert "shard main: NO LEARNER owns it" in shown.stdout
    assert "state   none published yet" in shown.stdout
    assert "alerts none" in shown.stdout


def test_redis_down_is_one_line_and_a_hint(topics: StreamSettings) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    # A Redis of its own that is down, not the test stack's behind its sentinels.
    shown = _cli(topics, HEADRACE_REDIS_URL=url, HEADRACE_REDIS_SENTINELS="")
    assert shown.returncode == 1
    assert shown.stdout == ""
    (line,) = shown.stderr.splitlines()
    assert line.startswith(f"headrace: error: Redis at {url} does not answer (hint: ")


def test_status_never_prints_the_redis_password(
    topics: StreamSettings, redis_client: redis.Redis
) -> None:
    password = topics.redis_password_value
    assert password
    host, port = topics.redis_host_port
    in_url = f"redis://headrace-user:{password}@{host}:{port}/0"
    # The URL's password is tried as the default user's (an ACL user would be set up so).
    shown = _cli(topics, "--json", HEADRACE_REDIS_URL=in_url.replace("headrace-user", ""))
    assert password not in shown.stdout + shown.stderr
    assert f'"redis_url": "redis://:***@{host}:{port}/0"' in shown.stdout
    wrong = _cli(topics, HEADRACE_REDIS_PASSWORD="not-the-password-0123456789")
    assert wrong.returncode == 1
    assert password not in wrong.stdout + wrong.stderr
    assert "not-the-password" not in wrong.stdout + wrong.stderr
    (line,) = wrong.stderr.splitlines()
    assert "set HEADRACE_REDIS_PASSWORD to the password it requires" in line


def test_kafka_down_shows_what_redis_knows_and_fails(
    topics: StreamSettings, redis_client: redis.Redis
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    shown = _cli(topics, HEADRACE_KAFKA_BOOTSTRAP=bootstrap)
    assert shown.returncode == 1
    assert f"kafka  {bootstrap}" in shown.stdout and "DOWN" in shown.stdout
    (line,) = shown.stderr.splitlines()
    assert line.startswith(f"headrace: error: Kafka at {bootstrap} does not answer (hint: ")
