"""docker-compose.yml cannot run here (no Docker engine), so its structure is checked by reading."""

import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("learn", "serve", "simulate")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(compose, dict)
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _words(command: Any) -> list[str]:
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert {"kafka", "redis", *APP_SERVICES} <= set(services)


def test_dependencies_wait_for_health_where_there_is_one(services: dict[str, Any]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        # The short list form would mean "started", which is not "ready".
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            expected = (
                {"service_healthy"}
                if "healthcheck" in services[target]
                else {"service_completed_successfully"}
            )
            assert rule.get("condition") in expected, f"{name} -> {target}: {rule}"


def test_apps_wait_for_kafka_and_redis(services: dict[str, Any]) -> None:
    for name in ("learn", "serve"):
        assert {"kafka", "redis"} <= set(services[name]["depends_on"]), name
    assert "kafka" in services["simulate"]["depends_on"]


def test_redis_keeps_an_append_only_file_on_a_volume(services: dict[str, Any]) -> None:
    redis = services["redis"]
    words = " ".join(_words(redis["command"])).split()
    assert words[words.index("--appendonly") + 1] == "yes"
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])
    assert _words(redis["healthcheck"]["test"])[-2:] == ["redis-cli", "ping"]


def test_redis_requires_the_password_every_app_is_given(services: dict[str, Any]) -> None:
    redis = services["redis"]
    words = " ".join(_words(redis["command"])).split()
    assert words[words.index("--requirepass") + 1] == '"$$HEADRACE_REDIS_PASSWORD"'
    assert "HEADRACE_REDIS_PASSWORD:?" in str(redis["environment"]["HEADRACE_REDIS_PASSWORD"])
    assert redis["environment"]["REDISCLI_AUTH"]  # the health check's ping authenticates
    for name in ("learn", "serve"):
        assert services[name]["environment"]["HEADRACE_REDIS_PASSWORD"], name


def test_only_the_learner_gets_the_signing_key(services: dict[str, Any]) -> None:
    learn = services["learn"]["environment"]
    assert "HEADRACE_SIGNING_KEY:?" in str(learn["HEADRACE_SIGNING_KEY"])
    for name in ("serve", "simulate"):
        env = services[name]["environment"]
        assert "HEADRACE_SIGNING_KEY" not in env and "HEADRACE_SIGNING_KEY_FILE" not in env
        assert env["HEADRACE_VERIFY_KEY"], name


def test_kafka_runs_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = kafka["environment"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    assert set(str(env["KAFKA_PROCESS_ROLES"]).split(",")) == {"broker", "controller"}
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    assert "CONTROLLER" in str(env["KAFKA_LISTENERS"])
    assert "PLAINTEXT://kafka:9092" in str(env["KAFKA_ADVERTISED_LISTENERS"])
    assert "/opt/kafka/bin/" in " ".join(_words(kafka["healthcheck"]["test"]))
    assert any(str(volume).startswith("kafka-data:") for volume in kafka["volumes"])


def test_topics_are_created_before_the_apps_start(services: dict[str, Any]) -> None:
    init = services["kafka-init"]
    script = " ".join(_words(init["command"]))
    names = set(re.findall(r"[\w.]+", script))
    assert {"events", "events.dlq", "events.quarantine"} <= names
    assert "--partitions 3" in script
    for name in ("learn", "simulate"):
        assert services[name]["depends_on"]["kafka-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_apps_are_built_here_and_configured_for_the_compose_network(
    services: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == "."
        assert _words(service["command"])[:2] == ["headrace", name]
        env = service["environment"]
        assert env["HEADRACE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["HEADRACE_REDIS_URL"] == "redis://redis:6379/0"


def test_serve_is_published_and_health_checked(services: dict[str, Any]) -> None:
    serve = services["serve"]
    assert any(str(port).endswith(":8000") for port in serve["ports"])
    assert "/health" in " ".join(_words(serve["healthcheck"]["test"]))


def test_dockerfile_installs_the_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile


def _local_kafka_version() -> str:
    """The Kafka version `headrace stack up` runs: the one its Maven pom resolves."""
    # Our own file from this checkout, not untrusted input.
    pom = ElementTree.parse(ROOT / "headrace" / "devstack" / "localstack" / "pom.xml")  # noqa: S314
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.findtext("m:properties/m:kafka.version", namespaces=namespace)
    assert version, "the pom names no kafka.version"
    return version


def test_compose_runs_the_kafka_version_the_local_stack_runs(services: dict[str, Any]) -> None:
    local = _local_kafka_version()
    images = {
        name: str(service["image"])
        for name, service in services.items()
        if str(service.get("image", "")).startswith("apache/kafka")
    }
    assert set(images) == {"kafka", "kafka-init"}
    for name, image in images.items():
        assert image == f"apache/kafka:{local}", f"{name} runs {image}; the local stack {local}"
