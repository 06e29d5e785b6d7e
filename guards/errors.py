"""Errors raised by the guards package.

Guards never stop the learner on odd input (a NaN loss is scored as the worst
loss, an unknown event type passes): these errors are for misconfiguration
and for alert records that cannot be read back.
"""


class GuardError(Exception):
    """Base class for every error the guards package raises."""


class GuardConfigError(GuardError, ValueError):
    """Settings that contradict each other (pydantic reports it as a validation error)."""


class AlertFormatError(GuardError):
    """A stored alert record that is not an alert (a missing field, a wrong type)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"not an alert record: {detail}")
        self.detail = detail
