"""Errors raised by the learner package."""

import errno


class LearnerError(Exception):
    """Base class for every error the learner package raises."""


class ModelError(LearnerError):
    """A model cannot be built or used as asked (unknown kind, bad parameter)."""


class StateError(LearnerError):
    """Learner state cannot be encoded or decoded (corrupt, truncated or foreign bytes)."""


class FencedError(LearnerError):
    """A publish was refused: another learner owns the shard (a newer lease generation)."""

    def __init__(
        self,
        message: str,
        *,
        shard: str | None = None,
        generation: int | None = None,
        current_generation: int | None = None,
    ) -> None:
        super().__init__(message)
        self.shard = shard
        self.generation = generation
        self.current_generation = current_generation


class StateMovedError(FencedError):
    """A publish was refused: the state in Redis is not the one this learner last wrote or
    loaded. Redis lost its last writes (a failover, a restart from its append-only file) or
    something else wrote it; the learner must load what is there, under a new epoch."""

    def __init__(self, shard: str, expected: object, found: object) -> None:
        super().__init__(
            f"shard {shard}: Redis holds {found}, not the {expected} this learner last wrote "
            "or loaded (Redis lost writes, or something else wrote the state)",
            shard=shard,
        )


class UnverifiedStateError(StateError):
    """Shard state in Redis whose signature does not verify: refused before anything in it
    is deserialized (written by something other than the learner, or under another key)."""

    def __init__(self, shard: str, version: int | None, why: str) -> None:
        at = f"version {version}" if version is not None else "the state"
        super().__init__(f"shard {shard}: {at} in Redis refused before deserialization: {why}")
        self.shard = shard
        self.version = version
        self.why = why


class OperationError(Exception):
    """An operator's request could not be carried out; `kind` names the cause for the caller.

    Not a LearnerError: the API maps it by `kind` (a busy learner, a refused snapshot)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class MetricsPortError(LearnerError):
    """The learner's Prometheus endpoint cannot listen where its settings say (the port is
    taken, by another learner on the host most often)."""

    def __init__(self, host: str, port: int, reason: OSError) -> None:
        taken = " (another learner on this host?)" if reason.errno == errno.EADDRINUSE else ""
        super().__init__(
            f"the learner's metrics cannot listen on {host}:{port} "
            f"(HEADRACE_METRICS_HOST, HEADRACE_METRICS_PORT): {reason.strerror or reason}{taken}"
        )
        self.host = host
        self.port = port
