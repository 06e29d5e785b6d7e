"""The object-storage snapshot store: `<prefix><id>.snap` objects in an S3-compatible bucket.

Atomicity comes from S3 itself: one PutObject is visible only once the whole object has
arrived, and a writer killed mid-upload leaves no object at all (never a partial one). A
snapshot is one object, so its header cannot disagree with its body; a last-known-good
mark is an empty `<id>.lkg` object beside it, written after the snapshot exists. Listing
reads each object's header with a ranged GET and checks the object's size against the
size the header declares, so a partial or foreign object (copied in by hand, or by a
store that is less strict) is refused, not listed.

The client is boto3's, configured the usual AWS way: AWS_ENDPOINT_URL (for MinIO, Ceph,
a local server, ...), AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or
an instance role. Every failure of the store itself becomes a StoreUnavailableError.
"""

import functools
import io
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from snapshots.errors import SnapshotError, SnapshotNotFoundError, StoreUnavailableError
from snapshots.keys import VerifyKeys
from snapshots.location import S3Location
from snapshots.manifest import SnapshotInfo, validate_snapshot_id
from snapshots.store import LKG_SUFFIX, SUFFIX, Rejected, describe, oldest_first

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from types_boto3_s3 import S3Client

_T = TypeVar("_T")
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_HEADER_READ = 64 * 1024
"""Bytes fetched by a listing's first ranged GET: a whole header, usually, in one request."""


def default_client() -> "S3Client":
    """boto3's S3 client from the environment, with bounded timeouts and standard retries.

    A learner must not hang on a snapshot upload, nor an operator on a listing."""
    config = Config(
        connect_timeout=10, read_timeout=60, retries={"mode": "standard", "max_attempts": 5}
    )
    return boto3.session.Session().client("s3", config=config)


def _not_found(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND


class _Object(NamedTuple):
    key: str
    size: int
    mtime: datetime


class _RangeReader(io.RawIOBase):
    """An object read through ranged GETs, for the codec's `peek` to read the header only."""

    def __init__(self, client: "S3Client", bucket: str, obj: _Object) -> None:
        self._client, self._bucket, self._obj, self._pos = client, bucket, obj, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer") -> int:
        end = min(self._pos + memoryview(buffer).nbytes, self._obj.size)
        if end <= self._pos:
            return 0
        try:
            got = self._client.get_object(
                Bucket=self._bucket, Key=self._obj.key, Range=f"bytes={self._pos}-{end - 1}"
            )["Body"].read()
        except ClientError as exc:
            # Replaced by a shorter object since the listing: its end came early.
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return 0
            raise
        got = got[: end - self._pos]
        memoryview(buffer).cast("B")[: len(got)] = got
        self._pos += len(got)
        return len(got)


class S3Store:
    """Snapshots as `<prefix><id>.snap` objects; `<prefix><id>.lkg` marks a last known good."""

    def __init__(
        self, where: S3Location, key: VerifyKeys, client: "S3Client | None" = None
    ) -> None:
        self.where = where
        self._key = key
        self._client = client if client is not None else default_client()

    @property
    def location(self) -> str:
        return self.where.url

    def _object_key(self, snapshot_id: str, suffix: str = SUFFIX) -> str:
        return f"{self.where.prefix}{validate_snapshot_id(snapshot_id)}{suffix}"

    def _call(self, what: str, action: Callable[[], _T], snapshot_id: str | None = None) -> _T:
        try:
            return action()
        except ClientError as exc:
            if snapshot_id is not None and _not_found(exc):
                raise SnapshotNotFoundError(snapshot_id) from None
            raise StoreUnavailableError(f"{what} in {self.location}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"{what} in {self.location}: {exc}") from exc

    def _exists(self, snapshot_id: str) -> None:
        key = self._object_key(snapshot_id)
        self._call(
            f"looking up {snapshot_id}",
            lambda: self._client.head_object(Bucket=self.where.bucket, Key=key),
            snapshot_id,
        )

    def put(self, snapshot_id: str, blob: bytes) -> None:
        key = self._object_key(snapshot_id)
        # One PutObject (not a multipart upload): S3 shows it whole or not at all, and checks
        # the bytes against the checksum botocore sends, so a corrupted transfer is refused.
        self._call(
            f"writing {snapshot_id}",
            lambda: self._client.put_object(
                Bucket=self.where.bucket,
                Key=key,
                Body=blob,
                ContentType="application/octet-stream",
            ),
        )

    def get(self, snapshot_id: str) -> bytes:
        key = self._object_key(snapshot_id)
        return self._call(
            f"reading {snapshot_id}",
            lambda: self._client.get_object(Bucket=self.where.bucket, Key=key)["Body"].read(),
            snapshot_id,
        )

    def delete(self, snapshot_id: str) -> None:
        # S3 deletes a missing key without complaint; the store's contract says "not found".
        self._exists(snapshot_id)
        # The mark first: a mark left alone by a failure here would promote nothing.
        for key in (self._object_key(snapshot_id, LKG_SUFFIX), self._object_key(snapshot_id)):
            delete = functools.partial(
                self._client.delete_object, Bucket=self.where.bucket, Key=key
            )
            self._call(f"deleting {snapshot_id}", delete)

    def mark_last_known_good(self, snapshot_id: str) -> None:
        # A marker beside the object, not a rewrite: the store holds no signing duty, and a
        # marker can only promote a snapshot that still verifies on restore.
        self._exists(snapshot_id)
        key = self._object_key(snapshot_id, LKG_SUFFIX)
        self._call(
            f"marking {snapshot_id}",
            lambda: self._client.put_object(Bucket=self.where.bucket, Key=key, Body=b""),
        )

    def _objects(self) -> list[_Object]:
        def listing() -> list[_Object]:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.where.bucket, Prefix=self.where.prefix
            )
            return [
                _Object(item["Key"], item["Size"], item["LastModified"])
                for page in pages
                for item in page.get("Contents", [])
            ]

        return self._call("listing snapshots", listing)

    def _scan(self) -> Iterator[SnapshotInfo | Rejected]:
        objects = self._objects()
        marked = {o.key for o in objects if o.key.endswith(LKG_SUFFIX)}
        for obj in objects:
            name = obj.key[len(self.where.prefix) :]
            if "/" in name or not name.endswith(SUFFIX):
                continue  # a deeper "folder", a mark, or not a snapshot name
            snapshot_id = name[: -len(SUFFIX)]
            reader = io.BufferedReader(
                _RangeReader(self._client, self.where.bucket, obj), _HEADER_READ
            )
            read = functools.partial(
                describe,
                snapshot_id,
                obj.size,
                obj.mtime,
                reader,
                self._key,
                marked_last_known_good=obj.key[: -len(SUFFIX)] + LKG_SUFFIX in marked,
            )
            try:
                yield self._call(f"reading the header of {snapshot_id}", read, snapshot_id)
            except SnapshotNotFoundError:
                continue  # deleted while we listed
            except StoreUnavailableError:
                raise
            except SnapshotError as exc:
                yield Rejected(name, str(exc))

    def rejected(self) -> list[Rejected]:
        return [i for i in self._scan() if isinstance(i, Rejected)]

    def list(self) -> list[SnapshotInfo]:
        """Every snapshot whose header verifies and whose size is whole, oldest first."""
        return oldest_first([i for i in self._scan() if isinstance(i, SnapshotInfo)])
