"""What only the S3 store does: choosing it by setting, unfinished uploads, an unreachable
store. The shared contract runs in test_store.py on both stores."""

from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from pydantic import ValidationError

from snapshots.codec import encode
from snapshots.directory import DirectoryStore
from snapshots.errors import SnapshotNotFoundError, StoreUnavailableError
from snapshots.keys import SigningKey
from snapshots.location import S3Location, open_store
from snapshots.manifest import SnapshotFacts
from snapshots.retention import RetentionPolicy, apply
from snapshots.s3 import S3Store
from snapshots.settings import SnapshotSettings
from snapshots.store import last_known_good, load, save
from tests.support import free_port

SIGNER = SigningKey.generate()
KEY = SIGNER.public


def snapshot(version: int, last_known_good: bool = False) -> bytes:
    facts = SnapshotFacts(
        model="main",
        variants=("a",),
        version=version,
        offsets={0: version},
        created_at=datetime(2025, 3, 1, 12, version, tzinfo=UTC),
        last_known_good=last_known_good,
    )
    return encode(facts, b"state" * 1000, SIGNER)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://snaps", "snaps", ""),
        ("s3://snaps/", "snaps", ""),
        ("s3://snaps/prod/shard-a", "snaps", "prod/shard-a/"),
        ("s3://my.bucket-1/x/", "my.bucket-1", "x/"),
    ],
)
def test_urls_name_a_bucket_and_a_prefix(url: str, bucket: str, prefix: str) -> None:
    assert S3Location.parse(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "/var/snaps",
        "file:///var/snaps",
        "s3://",
        "s3://UPPER",
        "s3://b",
        "s3://ok/a//b",
        "s3://ok/../x",
    ],
)
def test_other_urls_are_refused_when_settings_load(url: str) -> None:
    with pytest.raises(ValidationError, match="snapshot_url"):
        SnapshotSettings(snapshot_url=url)


def test_the_setting_picks_the_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEADRACE_SNAPSHOT_DIR", str(tmp_path / "folder"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("HEADRACE_SNAPSHOT_URL", "")
    folder = open_store(SnapshotSettings(), KEY)
    assert isinstance(folder, DirectoryStore) and folder.location == str(tmp_path / "folder")
    monkeypatch.setenv("HEADRACE_SNAPSHOT_URL", "s3://snaps/prod")
    s3 = open_store(SnapshotSettings(), KEY)  # no request is made until the store is used
    assert isinstance(s3, S3Store) and s3.location == "s3://snaps/prod/"


def test_an_unfinished_upload_is_invisible(s3_url: str) -> None:
    """A multipart upload never completed (a writer killed mid-upload) lists nothing."""
    where = S3Location.parse(s3_url)
    store = S3Store(where, KEY)
    client = boto3.session.Session().client("s3")
    key = f"{where.prefix}main-killed.snap"
    upload = client.create_multipart_upload(Bucket=where.bucket, Key=key)
    client.upload_part(
        Bucket=where.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=snapshot(1)
    )
    assert store.list() == [] and store.rejected() == []
    with pytest.raises(SnapshotNotFoundError):
        store.get("main-killed")


def test_marks_retention_and_a_prefix_of_its_own(s3_url: str) -> None:
    where = S3Location.parse(s3_url)
    store = S3Store(where, KEY)
    # Another store's objects in the same bucket, under another prefix, are not ours.
    neighbour = S3Store(S3Location(where.bucket, "elsewhere/"), KEY)
    save(neighbour, snapshot(9), KEY)
    ids = [save(store, snapshot(v, last_known_good=v == 1), KEY).snapshot_id for v in range(1, 6)]
    store.mark_last_known_good(ids[2])
    deleted = apply(store, RetentionPolicy(keep_last=2, keep_daily_days=0))
    assert deleted == [ids[1]]  # 1 and 3 are last known good, 4 and 5 the newest two
    assert [i.snapshot_id for i in store.list()] == [ids[0], *ids[2:]]
    good = last_known_good(store, "main")
    assert good is not None and good.snapshot_id == ids[2] and good.marked_last_known_good
    assert [i.header.version for i in neighbour.list()] == [9]
    header, body = load(store, ids[4], KEY, expect_model="main")
    assert header.version == 5 and body == b"state" * 1000


def test_an_unreachable_store_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    client = boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        config=Config(retries={"max_attempts": 1}, connect_timeout=5),
    )
    store = S3Store(S3Location("snaps", ""), KEY, client)
    for call in (store.list, lambda: store.get("main-1"), lambda: store.put("main-1", b"x")):
        with pytest.raises(StoreUnavailableError, match="s3://snaps/"):
            call()


def test_a_missing_bucket_is_unavailable_not_empty(s3_url: str) -> None:
    store = S3Store(S3Location("headrace-no-such-bucket", ""), KEY)
    with pytest.raises(StoreUnavailableError, match="NoSuchBucket"):
        store.list()
    with pytest.raises(StoreUnavailableError):
        store.put("main-1", snapshot(1))
