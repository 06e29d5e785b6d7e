"""Snapshot and signing settings: who signs, who verifies, where snapshots live, how many.

Built by each composition root, never at import time.
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from snapshots.errors import MissingKeyError, NoSigningKeyError, WeakKeyError
from snapshots.keys import DEV_KEY, SigningKey, VerifyKey

MIN_KEY_BYTES = 32

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
    """Why this HMAC key is unfit to vouch for anything, or None when it looks like a secret."""
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


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [key.strip() for key in value.split(",") if key.strip()]
    return value


class SigningSettings(BaseSettings):
    """The learner's Ed25519 signing key and the public keys every reader verifies with.

    The learner signs its state in Redis and its snapshots; the API and the CLI verify
    with public keys alone. Give the signing key to the learners (and an operator's CLI
    that restores or takes snapshots with no learner running), never to the API."""

    # hide_input_in_errors: a refused key must not be echoed into logs by the error message.
    model_config = SettingsConfigDict(
        env_prefix="HEADRACE_", extra="ignore", hide_input_in_errors=True
    )

    signing_key: SecretStr | None = None
    """The learner's Ed25519 private key (HEADRACE_SIGNING_KEY): base64 of its 32 bytes,
    or PEM. Prefer HEADRACE_SIGNING_KEY_FILE; `headrace keys generate FILE` makes one."""

    signing_key_file: Path | None = None
    """A file holding the signing key (HEADRACE_SIGNING_KEY_FILE), readable by the learner
    only (mode 0600)."""

    verify_key: str | None = None
    """The public key state and snapshots must be signed with (HEADRACE_VERIFY_KEY), base64
    or PEM; `headrace keys public` prints the signing key's. Default: the signing key's
    own public key, so a learner needs only its private key."""

    verify_previous_keys: Annotated[list[str], NoDecode] = []
    """Public keys retired by a rotation (HEADRACE_VERIFY_PREVIOUS_KEYS), comma separated:
    state and snapshots they signed still verify. Empty it once the learners sign with the
    new key and `headrace snapshot resign` has re-signed the store."""

    snapshot_legacy_keys: Annotated[list[SecretStr], NoDecode] = []
    """HMAC keys of format-1 snapshots (HEADRACE_SNAPSHOT_LEGACY_KEYS, the old
    HEADRACE_SNAPSHOT_KEY and previous keys), comma separated. Read by `headrace snapshot
    resign` alone, to move such snapshots to Ed25519; never by a restore."""

    _signer: SigningKey | None = PrivateAttr(default=None)
    _verifiers: tuple[VerifyKey, ...] = PrivateAttr(default=())

    @field_validator("signing_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # HEADRACE_SIGNING_KEY= (set but empty) means "no key", not an empty secret.
        return None if value == "" else value

    @field_validator("signing_key_file", "verify_key", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("verify_previous_keys", "snapshot_legacy_keys", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("snapshot_legacy_keys")
    @classmethod
    def _refuse_weak_legacy_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for n, key in enumerate(value, 1):
            problem = key_problem(key.get_secret_value())
            if problem is not None:
                raise ValueError(f"legacy key {n} {problem}; such a key proves nothing")
        return value

    @model_validator(mode="after")
    def _parse_keys(self) -> "SigningSettings":
        if self.signing_key is not None and self.signing_key_file is not None:
            raise ValueError("set HEADRACE_SIGNING_KEY or HEADRACE_SIGNING_KEY_FILE, not both")
        text: str | None = None
        if self.signing_key is not None:
            text = self.signing_key.get_secret_value()
        elif self.signing_key_file is not None:
            try:
                text = self.signing_key_file.read_text()
            except OSError as exc:
                raise ValueError(f"HEADRACE_SIGNING_KEY_FILE: {exc.strerror}") from None
        signer = SigningKey.parse(text, "HEADRACE_SIGNING_KEY") if text is not None else None
        current = (
            VerifyKey.parse(self.verify_key, "HEADRACE_VERIFY_KEY")
            if self.verify_key is not None
            else (signer.public if signer is not None else None)
        )
        previous = [
            VerifyKey.parse(k, f"HEADRACE_VERIFY_PREVIOUS_KEYS key {n}")
            for n, k in enumerate(self.verify_previous_keys, 1)
        ]
        verifiers = tuple(dict.fromkeys([*([current] if current else []), *previous]))
        if signer is not None and signer.public not in verifiers:
            raise WeakKeyError(
                "the signing key's public key is neither HEADRACE_VERIFY_KEY nor one of "
                "HEADRACE_VERIFY_PREVIOUS_KEYS: this learner would refuse its own state"
            )
        if current is None and previous:
            raise ValueError("HEADRACE_VERIFY_PREVIOUS_KEYS needs HEADRACE_VERIFY_KEY too")
        self._signer, self._verifiers = signer, verifiers
        return self

    def signer(self) -> SigningKey:
        """The signing key; NoSigningKeyError when this process has none."""
        if self._signer is None:
            raise NoSigningKeyError()
        return self._signer

    @property
    def has_signer(self) -> bool:
        return self._signer is not None

    def verify_keys(self) -> tuple[VerifyKey, ...]:
        """The keys a signature may be made with: the current one first, then previous ones;
        MissingKeyError when none is configured."""
        if not self._verifiers:
            raise MissingKeyError()
        return self._verifiers

    def legacy_keys(self) -> tuple[bytes, ...]:
        """HMAC keys of format-1 snapshots (for `snapshot resign` only)."""
        return tuple(k.get_secret_value().encode() for k in self.snapshot_legacy_keys)


class SnapshotSettings(BaseSettings):
    """Where snapshots are stored, how often they are taken, and which ones are kept."""

    model_config = SettingsConfigDict(env_prefix="HEADRACE_", extra="ignore")

    snapshot_dir: Path = Path("snapshots-data")
    """Folder of the directory snapshot store (HEADRACE_SNAPSHOT_DIR); used when
    HEADRACE_SNAPSHOT_URL is unset."""

    snapshot_url: str | None = None
    """Object storage for snapshots instead of the folder (HEADRACE_SNAPSHOT_URL), as
    s3://bucket/prefix. Endpoint, region and credentials come from the usual AWS variables
    (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)
    or the instance's role; the bucket must exist."""

    @field_validator("snapshot_url", mode="before")
    @classmethod
    def _check_url(cls, value: object) -> object:
        if value == "":
            return None  # HEADRACE_SNAPSHOT_URL= (set but empty) means the folder
        if isinstance(value, str):
            from snapshots.location import S3Location

            return S3Location.parse(value).url
        return value

    @property
    def snapshot_location(self) -> str:
        """Where snapshots are kept, for messages."""
        return self.snapshot_url or str(self.snapshot_dir)

    snapshot_interval_s: float = Field(default=60.0, ge=0)
    """Seconds between two snapshots taken by the learner; 0 switches snapshots off
    (then a cold start has nothing to restore)."""

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
