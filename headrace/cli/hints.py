"""What the CLI says when a command fails: one line, the cause, and a hint of what to do."""

from kafka.errors import KafkaError
from pydantic import ValidationError
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError

from headrace.devstack.errors import StackError
from learner.errors import (
    LearnerError,
    MetricsPortError,
    ModelError,
    OperationError,
    StateError,
    UnverifiedStateError,
)
from snapshots.errors import (
    BadSignatureError,
    MissingKeyError,
    SnapshotError,
    SnapshotNotFoundError,
    StoreUnavailableError,
)
from stream.errors import StreamError

EXPECTED: tuple[type[BaseException], ...] = (
    StackError,
    StreamError,
    LearnerError,
    SnapshotError,
    OperationError,
    RedisError,
    KafkaError,
    ValidationError,
)
"""Failures the CLI reports in one line; anything else is a bug and keeps its traceback."""

_REDIS = "is Redis running? `headrace stack up` starts the local one, HEADRACE_REDIS_URL says where"
_KAFKA = (
    "is Kafka running? `headrace stack up` starts the local one, "
    "HEADRACE_KAFKA_BOOTSTRAP says where"
)


_SIGNATURE = (
    "signed with another key? while rotating, set HEADRACE_VERIFY_PREVIOUS_KEYS "
    "(docs/operations.md)"
)
_AUTH_HINT = (
    "Redis requires a password: set HEADRACE_REDIS_PASSWORD (the local stack's is in "
    "its folder, redis.password)"
)
_UNVERIFIED = (
    "check HEADRACE_VERIFY_KEY; if nobody but the learner could have written it, `headrace "
    'snapshot restore latest` replaces it (docs/operations.md, "What is trusted, and why")'
)
_NOT_FOUND = "`headrace snapshot list` shows the snapshots this key can verify"
_STORE = (
    "HEADRACE_SNAPSHOT_URL names the bucket; AWS_ENDPOINT_URL, AWS_DEFAULT_REGION and the "
    "AWS credentials say where and as whom (docs/learner.md, Snapshots)"
)
_BUSY = "`headrace status` shows which learner owns the shard and how far behind it is"
# An operation refused by the learner (or under the lease) names its cause by class name.
_BY_KIND = {
    "BadSignatureError": _SIGNATURE,
    "SnapshotNotFoundError": _NOT_FOUND,
    "StoreUnavailableError": _STORE,
    "LearnerBusy": _BUSY,
}


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, RedisAuthenticationError):
        return _AUTH_HINT
    # Sentinels that refuse the password: redis-py names the cause only in the message.
    if isinstance(exc, MasterNotFoundError) and "AuthenticationError" in str(exc):
        return _AUTH_HINT
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return _REDIS
    if isinstance(exc, KafkaError):
        return _KAFKA
    if isinstance(exc, ValidationError):
        return "every setting is in the README's Configuration section and docs/"
    if isinstance(exc, BadSignatureError):
        return _SIGNATURE
    if isinstance(exc, SnapshotNotFoundError):
        return _NOT_FOUND
    if isinstance(exc, StoreUnavailableError):
        return _STORE
    if isinstance(exc, OperationError):
        return _BY_KIND.get(exc.kind)
    if isinstance(exc, UnverifiedStateError):
        return _UNVERIFIED
    if isinstance(exc, MetricsPortError):
        return (
            "give each learner on a host its own HEADRACE_METRICS_PORT, or 0 for no metrics "
            "endpoint (docs/learner.md, Metrics)"
        )
    if isinstance(exc, ModelError):
        return (
            "HEADRACE_VARIANTS gives each variant a kind: logreg, tree, fm, or a model "
            "function module:function (docs/learner.md)"
        )
    if isinstance(exc, StateError):
        return "has a learner published this shard yet? `headrace status` shows the state"
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a check across fields: the message names them
            return f"invalid settings: {message}"
        where = "_".join(str(part) for part in error["loc"])
        return f"invalid setting HEADRACE_{where.upper()}: {message}"
    if isinstance(exc, RedisError):
        return f"Redis: {exc}"
    if isinstance(exc, KafkaError):
        return f"Kafka: {exc}"
    return str(exc)


def one_line(exc: BaseException) -> str:
    """`headrace: error: <cause> (hint: <what to do>)`, on one line."""
    text = " ".join(_message(exc).split())
    # These already carry their own hint in their message.
    hint = None if isinstance(exc, (StackError, MissingKeyError)) else _hint(exc)
    return f"headrace: error: {text}" + (f" (hint: {hint})" if hint else "")
