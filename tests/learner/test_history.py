"""The metrics history's points: when a publish carries one, and the rates in it."""

from typing import Any

from learner.history import HistoryRecorder

VARIANTS: dict[str, Any] = {
    "main": {
        "n_learned": 10,
        "metrics": {
            "log_loss": 0.4,
            "roc_auc": 0.7,
            "rolling_log_loss": 0.3,
            "rolling_roc_auc": 0.8,
        },
    }
}


def test_a_point_at_most_every_interval_with_rates_since_the_last_committed_one() -> None:
    recorder = HistoryRecorder(every_s=1.0)
    first = recorder.point(100.0, 10, 50, VARIANTS, {"quarantined_rate": 3, "learned": 10}, 7)
    assert first is not None
    assert first["learned_per_s"] is None and first["events_per_s"] is None
    assert first["lag"] == 7 and first["quarantined"] == {"rate": 3}
    assert first["variants"]["main"] == {
        "n_learned": 10,
        "log_loss": 0.4,
        "roc_auc": 0.7,
        "rolling_log_loss": 0.3,
        "rolling_roc_auc": 0.8,
    }
    recorder.published(True)
    assert recorder.point(100.5, 20, 80, VARIANTS, {}, None) is None
    recorder.published(False)
    second = recorder.point(102.0, 30, 250, VARIANTS, {}, None)
    assert second is not None
    assert second["learned_per_s"] == 10.0 and second["events_per_s"] == 100.0
    # Not committed (a fenced publish): the next point's rates still start from the first.
    recorder.published(False)
    third = recorder.point(104.0, 50, 450, VARIANTS, {}, None)
    assert third is not None and third["learned_per_s"] == 10.0


def test_interval_zero_puts_a_point_on_every_publish() -> None:
    recorder = HistoryRecorder(every_s=0.0)
    for t in (1.0, 1.0, 1.5):
        assert recorder.point(t, 1, 1, {}, {}, None) is not None
        recorder.published(True)
