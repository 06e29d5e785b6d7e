"""Alerts: what a guard says when it sees something, in one record shape.

An alert's id is derived from where it happened in the stream (the variant's
example count and the event time of the example that raised it), never from
the wall clock or a random number, so a learner that replays after a crash
raises the same ids again and the alert store keeps one copy of each.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Final

from guards.errors import AlertFormatError

DETECTORS: Final = ("adwin", "page_hinkley", "auc_drop", "kswin", "psi", "rollback")
"""Values of `Alert.detector`."""


def alert_id(model: str, variant: str, detector: str, signal: str, n: int, ts: float) -> str:
    """`model:variant:detector:signal:n:ts_ms`; n alone repeats after a monitor is rebuilt."""
    return f"{model}:{variant}:{detector}:{signal}:{n}:{round(ts * 1000)}"


_OPTIONAL: Final = ("test_statistic", "test_threshold", "ends")


@dataclass(frozen=True, slots=True)
class Alert:
    """One detection by a guard."""

    id: str
    """Deterministic: the same example in a replay gives the same id (the store dedupes on it)."""
    ts: float
    """Event time (epoch seconds) of the example that raised the alert."""
    model: str
    """The model (shard) watched."""
    variant: str
    """The variant of that model watched."""
    detector: str
    """adwin, page_hinkley, auc_drop, kswin, psi or rollback."""
    signal: str
    """What was watched: `loss`, `ranking`, `prediction` or `feature:<name>`."""
    value: float
    """The figure that crossed the threshold (a mean loss, a PSI, a p-value ...)."""
    threshold: float
    """The threshold it crossed; `message` says in which direction."""
    window: int
    """Examples the figure summarises."""
    message: str
    """One human-readable sentence."""
    test_statistic: float | None = None
    """The detector's own test statistic when it alerted (loss and error alerts): Page-Hinkley's
    cumulative excess, or the difference of the two rates or means ADWIN compared."""
    test_threshold: float | None = None
    """The line that statistic crossed: Page-Hinkley's threshold, or ADWIN's bound."""
    ends: str | None = None
    """Set on the record that closes an alert: the id of the alert that is over. Its `ts`
    is when it ended, `value` and `threshold` what showed it."""

    @classmethod
    def make(
        cls,
        *,
        n: int,
        ts: float,
        model: str,
        variant: str,
        detector: str,
        signal: str,
        value: float,
        threshold: float,
        window: int,
        message: str,
        test_statistic: float | None = None,
        test_threshold: float | None = None,
    ) -> "Alert":
        """An alert whose id is derived from (model, variant, detector, signal, n, ts)."""
        return cls(
            alert_id(model, variant, detector, signal, n, ts),
            ts,
            model,
            variant,
            detector,
            signal,
            value,
            threshold,
            window,
            message,
            test_statistic,
            test_threshold,
        )

    def end(
        self,
        *,
        ts: float,
        value: float,
        threshold: float,
        window: int,
        message: str,
        test: tuple[float, float] | None = None,
    ) -> "Alert":
        """The record that says this alert is over (at event time `ts`)."""
        return Alert(
            f"{self.id}:end",
            ts,
            self.model,
            self.variant,
            self.detector,
            self.signal,
            value,
            threshold,
            window,
            message,
            test[0] if test is not None else None,
            test[1] if test is not None else None,
            self.id,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: strings, finite floats and an int."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Alert":
        """Read back what `to_dict` wrote; raises AlertFormatError on anything else."""
        if not isinstance(data, dict):
            raise AlertFormatError(f"expected an object, got {type(data).__name__}")
        expected = set(cls.__dataclass_fields__)
        # Records written before these fields existed have none of them.
        if missing := sorted(expected - data.keys() - set(_OPTIONAL)):
            raise AlertFormatError(f"missing {', '.join(missing)}")
        if extra := sorted(data.keys() - expected):
            raise AlertFormatError(f"unknown {', '.join(extra)}")
        text = ("id", "model", "variant", "detector", "signal", "message")
        for name in text:
            if not isinstance(data[name], str):
                raise AlertFormatError(f"{name} must be a string")
        numbers = {}
        for name in ("ts", "value", "threshold"):
            value = data[name]
            # bool is an int subclass; True is not a threshold.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise AlertFormatError(f"{name} must be a number")
            if not math.isfinite(value):
                raise AlertFormatError(f"{name} must be finite")
            numbers[name] = float(value)
        optional: dict[str, Any] = {}
        for name in _OPTIONAL:
            value = data.get(name)
            if value is not None:
                if name == "ends":
                    if not isinstance(value, str):
                        raise AlertFormatError("ends must be a string or null")
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    raise AlertFormatError(f"{name} must be a number or null")
                elif not math.isfinite(value):
                    raise AlertFormatError(f"{name} must be finite")
                else:
                    value = float(value)
            optional[name] = value
        window = data["window"]
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise AlertFormatError("window must be a non-negative integer")
        return cls(
            id=data["id"],
            ts=numbers["ts"],
            model=data["model"],
            variant=data["variant"],
            detector=data["detector"],
            signal=data["signal"],
            value=numbers["value"],
            threshold=numbers["threshold"],
            window=window,
            message=data["message"],
            **optional,
        )
