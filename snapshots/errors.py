"""Errors raised by the snapshots package.

Every refusal has its own class, so the API and the CLI can say exactly why a
snapshot was not restored (and map the cause to a status code in one place).
"""


class SnapshotError(Exception):
    """Base class for every error the snapshots package raises."""


class MissingKeyError(SnapshotError):
    """No signing key is configured, so snapshots can be neither written nor verified."""

    def __init__(self, detail: str = "") -> None:
        message = (
            "no snapshot signing key: set HEADRACE_SNAPSHOT_KEY (32 bytes or more), or "
            "HEADRACE_SNAPSHOT_DEV_KEY=true for the fixed development key; "
            "no unsigned snapshots in production"
        )
        super().__init__(f"{message} ({detail})" if detail else message)


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


class IncompatibleVersionError(SnapshotRefusedError):
    """The format version or the library versions it was written with do not fit this process."""

    reason = "incompatible version"
