"""Alert records: deterministic ids, a lossless dict (and JSON) round trip, strict reading."""

import dataclasses
import json
from typing import Any

import pytest

from guards.alerts import Alert, alert_id
from guards.errors import AlertFormatError, GuardError


def sample(**changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "n": 31_200,
        "ts": 1_767_225_600.25,
        "model": "main",
        "variant": "a",
        "detector": "page_hinkley",
        "signal": "loss",
        "value": 0.41,
        "threshold": 0.27,
        "window": 500,
        "message": "page_hinkley: mean log loss rose",
    }
    fields.update(changes)
    return Alert.make(**fields)


def test_id_is_derived_from_where_it_happened_not_from_when_it_ran() -> None:
    alert = sample()
    assert alert.id == "main:a:page_hinkley:loss:31200:1767225600250"
    assert alert.id == sample().id  # a replay of the same example: the same id
    assert sample(n=31_201).id != alert.id
    assert sample(ts=1_767_225_601.0).id != alert.id  # a rebuilt monitor restarts n at 0
    assert sample(signal="feature:price").id != alert.id
    assert alert_id("m", "v", "psi", "prediction", 7, 2.0) == "m:v:psi:prediction:7:2000"


def test_dict_round_trip_is_lossless_and_json_ready() -> None:
    alert = sample()
    data = alert.to_dict()
    assert set(data) == {
        "id",
        "ts",
        "model",
        "variant",
        "detector",
        "signal",
        "value",
        "threshold",
        "window",
        "message",
        "test_statistic",
        "test_threshold",
        "ends",
    }
    assert Alert.from_dict(data) == alert
    assert Alert.from_dict(json.loads(json.dumps(data))) == alert
    tested = sample(test_statistic=9.5, test_threshold=7.0)
    assert Alert.from_dict(json.loads(json.dumps(tested.to_dict()))) == tested


def test_a_record_written_before_the_test_fields_still_reads() -> None:
    data = sample().to_dict()
    for name in ("test_statistic", "test_threshold", "ends"):
        del data[name]
    assert Alert.from_dict(data) == sample()


def test_an_end_record_names_the_alert_it_closes() -> None:
    alert = sample()
    end = alert.end(ts=1_767_226_000.0, value=0.2, threshold=0.27, window=800, message="over")
    assert end.ends == alert.id and end.id == f"{alert.id}:end"
    assert (end.detector, end.signal, end.ts) == (alert.detector, alert.signal, 1_767_226_000.0)
    assert Alert.from_dict(json.loads(json.dumps(end.to_dict()))) == end


def test_integers_where_floats_belong_are_accepted() -> None:
    data = sample().to_dict() | {"ts": 5, "value": 1, "threshold": 0}
    alert = Alert.from_dict(data)
    assert (alert.ts, alert.value, alert.threshold) == (5.0, 1.0, 0.0)
    assert isinstance(alert.ts, float)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"id": None}, "missing id"),
        ({"extra": 1}, "unknown extra"),
        ({"model": 3}, "model must be a string"),
        ({"value": "0.4"}, "value must be a number"),
        ({"threshold": True}, "threshold must be a number"),
        ({"ts": float("nan")}, "ts must be finite"),
        ({"window": 2.5}, "window must be a non-negative integer"),
        ({"window": -1}, "window must be a non-negative integer"),
        ({"test_statistic": "9"}, "test_statistic must be a number or null"),
        ({"test_threshold": float("inf")}, "test_threshold must be finite"),
        ({"ends": 4}, "ends must be a string or null"),
    ],
)
def test_from_dict_refuses_what_is_not_an_alert(change: dict[str, Any], complaint: str) -> None:
    data = sample().to_dict()
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with pytest.raises(AlertFormatError, match=complaint) as caught:
        Alert.from_dict(data)
    assert isinstance(caught.value, GuardError)


def test_from_dict_refuses_a_non_object() -> None:
    with pytest.raises(AlertFormatError, match="expected an object"):
        Alert.from_dict([1, 2])  # type: ignore[arg-type]


def test_alerts_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample().value = 0.0  # type: ignore[misc]
