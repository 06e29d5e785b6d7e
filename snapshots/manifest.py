"""What a snapshot says about itself: its id, its header, its listing entry.

A leaf module (pydantic and the standard library only), so the codec, the
store, retention and the API can share these types without import cycles.
"""

import functools
import platform
import re
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from snapshots.errors import InvalidSnapshotIdError

FORMAT_VERSION = 2
"""Ed25519-signed (format 1 was HMAC-signed: see snapshots/codec.py)."""
WHOLE_SHARD = "*"
"""The variant of a snapshot that holds every variant of its shard."""

Compression = Literal["zlib", "lzma"]

# A plain file name on every file system and a plain key on S3: no separators,
# no leading dot (hidden and temp files start with one), no "..".
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_snapshot_id(snapshot_id: str) -> str:
    """The id itself when it is safe as a file name; InvalidSnapshotIdError otherwise."""
    if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id) or ".." in snapshot_id:
        raise InvalidSnapshotIdError(str(snapshot_id))
    return snapshot_id


def make_snapshot_id(model: str, created_at: datetime, version: int) -> str:
    """`<model>-<UTC time to the microsecond>-v<version>`: one model's ids sort by time."""
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return validate_snapshot_id(f"{model}-{stamp}-v{version:012d}")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _name(value: str) -> str:
    if not _NAME.fullmatch(value) or ".." in value:
        raise ValueError("1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with a dot")
    return value


Name = Annotated[str, AfterValidator(_name)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


class Libraries(BaseModel):
    """Versions of what wrote the body: a pickle is only as portable as its classes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    headrace: str
    river: str
    python: str

    def incompatibility(self, here: "Libraries") -> str | None:
        """Why a body written with these versions may not load in `here`, or None."""
        # Pickled River models rely on River's and Python's internals: patch releases
        # keep them, a new release series may not. The body's own layout is the
        # learner's to version, so headrace's version is informative only.
        for name in ("river", "python"):
            theirs, ours = getattr(self, name), getattr(here, name)
            if theirs.split(".")[:2] != ours.split(".")[:2]:
                return f"written with {name} {theirs}; this process has {ours}"
        return None


@functools.cache
def runtime_libraries() -> Libraries:
    """Versions of this process's headrace, River and Python."""

    def installed(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return Libraries(
        headrace=installed("headrace"), river=installed("river"), python=platform.python_version()
    )


class _Facts(BaseModel):
    """The fields the learner supplies; shared by SnapshotFacts and SnapshotHeader."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    model: Name
    """The shard (model) name."""
    variant: str = WHOLE_SHARD
    """One variant, or "*" when the snapshot holds every variant of the shard."""
    variants: tuple[Name, ...]
    """The variants whose state the body holds."""
    version: int = Field(ge=0)
    """The committed model-state version the snapshot was taken from."""
    offsets: dict[int, Annotated[int, Field(ge=0)]]
    """Kafka partition → next offset to read: where a restored learner resumes."""
    created_at: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    n_learned: dict[str, Annotated[int, Field(ge=0)]] = {}
    """Examples learned so far, per variant."""
    metrics: dict[str, dict[str, float]] = {}
    """Rolling metrics per variant (e.g. {"main": {"log_loss": 0.31}})."""
    last_known_good: bool = False
    """It passed the last-known-good gate when it was taken."""

    @model_validator(mode="after")
    def _consistent(self) -> "_Facts":
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ValueError("variants must be a non-empty list without duplicates")
        if self.variant != WHOLE_SHARD and self.variants != (self.variant,):
            raise ValueError(f"a snapshot of variant {self.variant!r} holds only that variant")
        unknown = (set(self.n_learned) | set(self.metrics)) - set(self.variants)
        if unknown:
            raise ValueError(f"n_learned or metrics name unknown variants {sorted(unknown)}")
        return self


class SnapshotFacts(_Facts):
    """What the learner knows about the state it hands over: the header minus the body's facts."""

    @property
    def snapshot_id(self) -> str:
        """The id the snapshot gets: `<model>-<UTC time>-v<version>`."""
        return make_snapshot_id(self.model, self.created_at, self.version)


class SnapshotHeader(_Facts):
    """The signed JSON header of a snapshot file."""

    snapshot_id: Annotated[str, AfterValidator(validate_snapshot_id)]
    format_version: int
    libraries: Libraries
    compression: Compression
    body_length: int = Field(ge=0)
    """Bytes of the stored (compressed) body."""
    raw_length: int = Field(ge=0)
    """Bytes of the body once decompressed: what the caller unpickles."""
    body_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """SHA-256 of the stored (compressed) body, hex."""

    def holds(self, variant: str) -> bool:
        return self.variant == variant or (
            self.variant == WHOLE_SHARD and (variant == WHOLE_SHARD or variant in self.variants)
        )


class SnapshotInfo(BaseModel):
    """One entry of a store's listing, built from the verified header, never from the body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    snapshot_id: str
    size: int
    mtime: AwareDatetime
    header: SnapshotHeader
    marked_last_known_good: bool = False
    """Promoted to last known good after it was written (a marker beside the file)."""

    @property
    def model(self) -> str:
        return self.header.model

    @property
    def created_at(self) -> datetime:
        return self.header.created_at

    @property
    def last_known_good(self) -> bool:
        return self.marked_last_known_good or self.header.last_known_good


def passes_lkg_gate(loss: float, lkg_loss: float | None, margin: float) -> bool:
    """The last-known-good gate: loss no worse than the previous LKG's by more than `margin`.

    With no previous last known good, any finite loss qualifies.
    """
    if loss != loss or loss == float("inf"):  # NaN or inf: a broken model is never good
        return False
    if lkg_loss is None:
        return True
    return loss <= lkg_loss * (1.0 + margin)
