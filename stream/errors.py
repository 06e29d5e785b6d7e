"""Errors raised by the stream package."""


class StreamError(Exception):
    """Base class for every error the stream package raises."""


class PublishError(StreamError):
    """Kafka did not acknowledge records we had to deliver."""
