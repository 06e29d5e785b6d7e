"""Errors raised by the snapshots package.

Every refusal has its own class, so the API and the CLI can say exactly why a
snapshot was not restored (and map the cause to a status code in one place).
"""


class SnapshotError(Exception):
    """Base class for every error the snapshots package raises."""


class MissingKeyError(SnapshotError):
    """A key this process needs is not configured: nothing is signed or verified without."""

    def __init__(self, detail: str = "") -> None:
        message = (
            "no verifying key: set HEADRACE_VERIFY_KEY (the learner's public key; "
            "`headrace keys public` prints it), or give the learner HEADRACE_SIGNING_KEY_FILE"
        )
        super().__init__(detail or message)


class NoSigningKeyError(MissingKeyError):
    """This process holds no signing key, so it can verify but not sign."""

    def __init__(self, detail: str = "") -> None:
        message = (
            "no signing key: set HEADRACE_SIGNING_KEY_FILE or HEADRACE_SIGNING_KEY (the "
            "learner's Ed25519 key; `headrace keys generate FILE` makes one); no unsigned "
            "state or snapshots"
        )
        super().__init__(f"{message} ({detail})" if detail else message)


class WeakKeyError(SnapshotError, ValueError):
    """A key that is malformed, too short, typed rather than generated, or publicly known.

    A ValueError too, so a settings validator that meets one reports the setting."""


class InvalidSnapshotIdError(SnapshotError):
    """A snapshot id that is not a plain file name (path traversal, bad characters, empty)."""

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(
            f"invalid snapshot id {snapshot_id!r}: expected 1 to 128 characters from "
            "A-Z a-z 0-9 . _ -, not starting with a dot and without '..'"
        )
        self.snapshot_id = snapshot_id


class SnapshotNotFoundError(SnapshotError):
    """No snapshot with this id in the store."""

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"snapshot {snapshot_id!r} not found")
        self.snapshot_id = snapshot_id


class StoreUnavailableError(SnapshotError):
    """The store could not be read or written: object storage unreachable, a missing bucket,
    refused credentials. Nothing was changed by the failed call; it can be retried."""


class SnapshotRefusedError(SnapshotError):
    """Base class of every reason to refuse a snapshot's bytes; nothing was deserialized."""

    reason = "refused"

    def __init__(self, detail: str) -> None:
        super().__init__(f"snapshot refused ({self.reason}): {detail}")
        self.detail = detail


class UnsignedSnapshotError(SnapshotRefusedError):
    """The file carries no signature: it is missing or all zeros."""

    reason = "unsigned"


class BadSignatureError(SnapshotRefusedError):
    """The signature does not match: tampered with, or signed under another key."""

    reason = "bad signature"


class TruncatedSnapshotError(SnapshotRefusedError):
    """The file is shorter than its own lengths say (an interrupted write or copy)."""

    reason = "truncated"


class CorruptSnapshotError(SnapshotRefusedError):
    """Not a snapshot, an undecodable header, or a body whose length or hash does not match."""

    reason = "corrupt"


class WrongModelError(SnapshotRefusedError):
    """An authentic snapshot, but of another model or variant than the one expected."""

    reason = "wrong model"


class LegacySnapshotError(SnapshotRefusedError):
    """A format-1 snapshot, signed with a shared HMAC key that readers held too.

    Anyone who held that key could have forged it, so it is restored only after an
    operator re-signed it (`headrace snapshot resign` with HEADRACE_SNAPSHOT_LEGACY_KEYS)."""

    reason = "legacy HMAC signature"


class IncompatibleVersionError(SnapshotRefusedError):
    """The format version or the library versions it was written with do not fit this process."""

    reason = "incompatible version"
