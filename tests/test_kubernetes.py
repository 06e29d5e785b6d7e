"""deploy/kubernetes/: every manifest is valid against the Kubernetes schemas (checked
offline, with the schemas kubernetes-validate bundles), names only settings that exist,
and has the shape docs/operations.md describes."""

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from guards.settings import GuardSettings
from learner.settings import LearnerSettings
from snapshots.settings import SigningSettings, SnapshotSettings
from stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
SETTINGS: tuple[type[BaseSettings], ...] = (
    StreamSettings,
    LearnerSettings,
    ApiSettings,
    SnapshotSettings,
    SigningSettings,
    GuardSettings,
)
# The oldest Kubernetes we claim (policy/v1 and autoscaling/v2 are GA long before) and the
# newest the package knows.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
Doc = dict[str, Any]


def _docs() -> list[tuple[str, Doc]]:
    return [
        (path.name, doc)
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


DOCS = _docs()


def _find(kind: str) -> list[Doc]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def _named(kind: str, name: str) -> Doc:
    (found,) = [doc for doc in _find(kind) if doc["metadata"]["name"] == name]
    return found


def _pod(workload: Doc) -> Doc:
    pod: Doc = workload["spec"]["template"]["spec"]
    return pod


def _env_names(pod: Doc) -> set[str]:
    return {e["name"] for c in pod["containers"] for e in c.get("env", [])}


def _env_from(pod: Doc, kind: str) -> set[str]:
    ref = "configMapRef" if kind == "ConfigMap" else "secretRef"
    return {s[ref]["name"] for c in pod["containers"] for s in c.get("envFrom", []) if ref in s}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_there_are_manifests() -> None:
    kinds = {doc["kind"] for _, doc in DOCS}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    } <= kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("name", "doc"), DOCS, ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in DOCS]
)
def test_every_manifest_is_valid_kubernetes(name: str, doc: Doc, version: str) -> None:
    # strict: a misspelt or misplaced field is an error, not silently ignored by the server.
    kubernetes_validate.validate(doc, version, strict=True)


def test_every_setting_named_exists() -> None:
    known = {
        f"{s.model_config.get('env_prefix', '')}{field}".upper()
        for s in SETTINGS
        for field in s.model_fields
    }
    named: set[str] = set()
    for kind in ("ConfigMap", "Secret"):
        for doc in _find(kind):
            named |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    for workload in _find("Deployment"):
        named |= _env_names(_pod(workload))
    headrace = {n for n in named if n.startswith("HEADRACE_")}
    assert headrace, "no HEADRACE_ setting named at all"
    assert headrace <= known, f"not settings: {sorted(headrace - known)}"


def test_the_api_scales_on_a_target_metric_with_a_cool_down() -> None:
    (hpa,) = _find("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    target = spec["scaleTargetRef"]
    api = _named(target["kind"], target["name"])
    assert api["metadata"]["name"] == "headrace-api"
    assert "replicas" not in api["spec"], "the autoscaler owns the replica count"
    assert 1 < spec["minReplicas"] < spec["maxReplicas"]
    assert spec["metrics"], "a target metric"
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_the_api_is_ready_on_ready_and_behind_a_service() -> None:
    api = _named("Deployment", "headrace-api")
    (container,) = _pod(api)["containers"]
    assert container["command"] == ["headrace", "serve"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    labels = api["spec"]["template"]["metadata"]["labels"]
    services = [s for s in _find("Service") if _matches(s["spec"]["selector"], labels)]
    assert services, "no Service selects the API's pods"


def test_a_learner_deployment_per_shard_with_a_standby_and_a_budget() -> None:
    common = _named("ConfigMap", "headrace-common")["data"]
    shards = [part.split("=")[0] for part in common["HEADRACE_SHARDS"].split(";")]
    learners = [d for d in _find("Deployment") if d["metadata"]["name"] != "headrace-api"]
    by_shard = {}
    for learner in learners:
        (container,) = _pod(learner)["containers"]
        assert container["command"] == ["headrace", "learn"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        by_shard[env["HEADRACE_SHARD"]] = learner
    assert sorted(by_shard) == sorted(shards)
    budgets = _find("PodDisruptionBudget")
    for shard, learner in by_shard.items():
        assert learner["spec"]["replicas"] == 2, f"shard {shard}: active and standby"
        labels = learner["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if _matches(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, f"shard {shard}: one PodDisruptionBudget"
        assert covering[0]["spec"].get("maxUnavailable") == 1
        # A budget of one shard must not also cover another shard's learners.
        for other, pods in by_shard.items():
            other_labels = pods["spec"]["template"]["metadata"]["labels"]
            if other != shard:
                assert not _matches(covering[0]["spec"]["selector"]["matchLabels"], other_labels)


def test_only_learners_get_the_signing_key() -> None:
    signing_key_secret = "headrace-signing-key"
    for workload in _find("Deployment"):
        pod = _pod(workload)
        mounted = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        has_key = signing_key_secret in mounted | _env_from(pod, "Secret")
        is_learner = workload["metadata"]["name"] != "headrace-api"
        assert has_key == is_learner, workload["metadata"]["name"]


def test_config_and_secrets_referenced_exist() -> None:
    for kind in ("ConfigMap", "Secret"):
        defined = {d["metadata"]["name"] for d in _find(kind)}
        for workload in _find("Deployment"):
            assert _env_from(_pod(workload), kind) <= defined, workload["metadata"]["name"]
    for workload in _find("Deployment"):
        for volume in _pod(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in {
                    d["metadata"]["name"] for d in _find("Secret")
                }
