"""Errors raised by the local stack."""


class StackError(Exception):
    """The local Kafka/Redis stack could not be started, stopped or inspected."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base
