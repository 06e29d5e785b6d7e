"""Snapshot settings: the signing key, where snapshots live, how often, how many are kept.

Built by each composition root, never at import time.
"""

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from snapshots.errors import MissingKeyError

MIN_KEY_BYTES = 32

DEV_KEY = b"headrace-development-snapshot-key-NOT-A-SECRET"
"""The fixed development key. It is public, so a snapshot signed with it proves nothing."""

# Lower-cased fragments that mark a key someone copied from an example.
_PLACEHOLDERS = (
    "changeme",
    "change-me",
    "change_me",
    "changethis",
    "placeholder",
    "replaceme",
    "replace-me",
    "your-key",
    "yourkey",
    "your_key",
    "secret",
    "password",
    "example",
    "xxxxxxxx",
    DEV_KEY.decode().lower(),
)


def key_problem(key: str) -> str | None:
    """Why this key is unfit for production, or None when it looks like a real secret."""
    if len(key.encode()) < MIN_KEY_BYTES:
        return f"shorter than {MIN_KEY_BYTES} bytes"
    lowered = key.lower()
    found = next((p for p in _PLACEHOLDERS if p in lowered), None)
    if found is not None:
        return f"looks like a placeholder (contains {found!r})"
    # A key of few distinct characters ("aaaa…", "0101…") is typed, not generated.
    if len(set(key)) < 8:
        return "has fewer than 8 distinct characters"
    return None


class SnapshotSettings(BaseSettings):
    """How snapshots are signed, where they are stored, and which ones are kept."""

    # hide_input_in_errors: a refused key must not be echoed into logs by the error message.
    model_config = SettingsConfigDict(
        env_prefix="HEADRACE_", extra="ignore", hide_input_in_errors=True
    )

    snapshot_key: SecretStr | None = None
    """HMAC-SHA256 signing key (HEADRACE_SNAPSHOT_KEY), 32 bytes or more of UTF-8 text,
    e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`. Every learner and
    API replica that reads the same snapshots needs the same key."""

    snapshot_previous_keys: Annotated[list[SecretStr], NoDecode] = []
    """Keys retired by a rotation (HEADRACE_SNAPSHOT_PREVIOUS_KEYS), comma separated:
    snapshots signed with one of them still verify, while every new snapshot is signed with
    HEADRACE_SNAPSHOT_KEY. Empty it once `headrace snapshot resign` has re-signed the store
    (docs/operations.md, "Rotate the snapshot key")."""

    snapshot_dev_key: bool = False
    """Development mode (HEADRACE_SNAPSHOT_DEV_KEY): without a key, sign with the fixed,
    public development key; a short or placeholder key only warns. Never set in production."""

    snapshot_dir: Path = Path("snapshots-data")
    """Folder of the directory snapshot store (HEADRACE_SNAPSHOT_DIR)."""

    snapshot_interval_s: float = Field(default=60.0, ge=0)
    """Seconds between two snapshots taken by the learner; 0 switches snapshots off
    (then the learner runs without a key, and a cold start has nothing to restore)."""

    snapshot_compression: Literal["zlib", "lzma"] = "zlib"
    """Compression of the body: zlib is fast, lzma smaller and several times slower."""

    snapshot_keep_last: int = Field(default=10, ge=1)
    """Retention: the newest K snapshots of each model are always kept."""

    snapshot_keep_daily_days: int = Field(default=7, ge=0)
    """Retention: the newest snapshot of each UTC day is kept for this many days (today
    included); 0 keeps no dailies."""

    snapshot_keep_lkg: int | None = Field(default=None, ge=1)
    """Retention: how many last-known-good snapshots of each model are kept, newest first.
    Unset keeps every one, as the design says; set it when most snapshots pass the gate."""

    snapshot_lkg_margin: float = Field(default=0.02, ge=0)
    """Last-known-good gate: a snapshot qualifies when its rolling log loss is no worse than
    the previous last-known-good's by more than this relative margin (0.02 = 2 %)."""

    @field_validator("snapshot_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # HEADRACE_SNAPSHOT_KEY= (set but empty) means "no key", not an empty secret.
        return None if value == "" else value

    @field_validator("snapshot_previous_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_weak_key(self) -> "SnapshotSettings":
        if self.snapshot_key is None:
            return self
        problem = key_problem(self.snapshot_key.get_secret_value())
        if problem is None:
            return self
        message = f"HEADRACE_SNAPSHOT_KEY {problem}"
        if not self.snapshot_dev_key:
            raise ValueError(f"{message}; generate a random key of {MIN_KEY_BYTES}+ bytes")
        warnings.warn(f"{message}; accepted in development only", stacklevel=2)
        return self

    def verification_keys(self) -> tuple[bytes, ...]:
        """The keys a snapshot may be signed with: the signing key, then the previous ones."""
        current = self.signing_key()
        previous = (k.get_secret_value().encode() for k in self.snapshot_previous_keys)
        return (current, *(k for k in previous if k != current))

    def signing_key(self) -> bytes:
        """The key to sign and verify with; MissingKeyError when none is configured."""
        if self.snapshot_key is not None:
            return self.snapshot_key.get_secret_value().encode()
        if self.snapshot_dev_key:
            return DEV_KEY
        raise MissingKeyError()
