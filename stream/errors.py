"""Errors raised by the stream package."""


class StreamError(Exception):
    """Base class for every error the stream package raises."""


class PublishError(StreamError):
    """Kafka did not acknowledge records we had to deliver."""


class OperationError(Exception):
    """An operator's request could not be carried out; `kind` names the cause for the caller.

    Not a StreamError: the API maps it by `kind` (a busy learner, a refused snapshot)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind
