"""The learner's gauges of progressive metrics: an undefined value is no sample at all."""

from prometheus_client import REGISTRY

from learner import telemetry


def sample(variant: str, metric: str) -> float | None:
    labels = {"shard": "telemetry-test", "variant": variant, "metric": metric}
    return REGISTRY.get_sample_value("headrace_learner_progressive_metric", labels)


def test_an_undefined_metric_removes_its_series() -> None:
    telemetry.set_progressive("telemetry-test", "v", {"n": 10, "roc_auc": 0.8, "pr_auc": None})
    assert sample("v", "n") == 10.0
    assert sample("v", "roc_auc") == 0.8
    assert sample("v", "pr_auc") is None
    # One class in the window now: the AUC is undefined, not still 0.8.
    telemetry.set_progressive("telemetry-test", "v", {"n": 11, "roc_auc": None})
    assert sample("v", "roc_auc") is None
    assert sample("v", "n") == 11.0
