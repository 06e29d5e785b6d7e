"""Where snapshots live, by setting: a folder, or `s3://bucket/prefix` on object storage.

Every process opens its store here, so the learner, the API and the CLI always agree on
one place. The S3 client (and boto3's import) is only loaded when a URL asks for it.
"""

from typing import NamedTuple
from urllib.parse import urlsplit

from snapshots.keys import VerifyKeys
from snapshots.settings import SnapshotSettings
from snapshots.store import SnapshotStore

# S3's own bucket naming rules: 3 to 63 lower-case letters, digits, dots and hyphens.
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


class S3Location(NamedTuple):
    bucket: str
    prefix: str
    """Empty, or a key prefix ending in "/": every object of the store starts with it."""

    @classmethod
    def parse(cls, url: str) -> "S3Location":
        """`s3://bucket` or `s3://bucket/some/prefix`; ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ValueError(f"expected s3://bucket/prefix, got scheme {parts.scheme!r}")
        bucket = parts.netloc
        if not 3 <= len(bucket) <= 63 or not set(bucket) <= _BUCKET_CHARS:
            raise ValueError(f"{bucket!r} is not an S3 bucket name")
        if parts.query or parts.fragment:
            raise ValueError("an s3:// URL takes no query or fragment")
        prefix = parts.path.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValueError(f"prefix {prefix!r} has an empty, '.' or '..' part")
        return cls(bucket, f"{prefix}/" if prefix else "")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def open_store(settings: SnapshotSettings, key: VerifyKeys) -> SnapshotStore:
    """The store HEADRACE_SNAPSHOT_URL names, else the folder HEADRACE_SNAPSHOT_DIR."""
    if settings.snapshot_url is not None:
        from snapshots.s3 import S3Store

        return S3Store(S3Location.parse(settings.snapshot_url), key)
    from snapshots.directory import DirectoryStore

    return DirectoryStore(settings.snapshot_dir, key)
