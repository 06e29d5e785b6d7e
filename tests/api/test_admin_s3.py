"""Snapshots in object storage, end to end: a real learner snapshots to a local S3-API
server on its own schedule, the API lists and restores from there, and a tampered object
is refused before anything in it is loaded."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
import redis
from pydantic import SecretStr

from api.settings import ApiSettings
from learner.layout import ShardKeys
from learner.recovery import Snapshots
from learner.state import StateStore
from snapshots.location import S3Location
from snapshots.s3 import S3Store
from snapshots.settings import SigningSettings, SnapshotSettings
from stream.settings import StreamSettings
from tests.api.conftest import owning_learner, running_app
from tests.support import signing_key, wait_for

pytestmark = pytest.mark.integration

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def learning(topics: StreamSettings, redis_client: redis.Redis) -> Iterator[Snapshots]:
    """A real learner that owns the shard and snapshots by itself every half second, to
    the store of HEADRACE_SNAPSHOT_URL (the API of the test reads the same one)."""
    snapshots = Snapshots.from_settings(
        SnapshotSettings(snapshot_interval_s=0.5),
        SigningSettings(signing_key=SecretStr(signing_key().text)),
    )
    with owning_learner(topics, redis_client, snapshots):
        yield snapshots


@pytest.fixture
def s3_learner(
    topics: StreamSettings,
    redis_client: redis.Redis,
    s3_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[S3Store]:
    monkeypatch.setenv("HEADRACE_SNAPSHOT_URL", s3_url)
    with learning(topics, redis_client) as snapshots:
        assert isinstance(snapshots.store, S3Store)
        yield snapshots.store


def test_learner_snapshots_to_s3_and_the_api_restores_from_there(
    settings: StreamSettings, redis_client: redis.Redis, s3_learner: S3Store
) -> None:
    store = StateStore(redis_client, ShardKeys(settings.key_prefix, "main"), 0)
    taken = wait_for(
        lambda: [i for i in s3_learner.list() if i.header.version == store.version()],
        "the learner's own snapshot of its latest version in S3",
    )
    snapshot_id = taken[0].snapshot_id
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        listed = client.get("/admin/snapshots", headers=AUTH)
        assert listed.status_code == 200, listed.text
        assert snapshot_id in [s["snapshot_id"] for s in listed.json()["snapshots"]]

        before = store.version()
        restored = client.post(
            "/admin/restore", headers=AUTH, json={"snapshot": snapshot_id, "replay": False}
        )
        assert restored.status_code == 200, restored.text
        version = restored.json()["version"]
        assert version == before + 1
        meta = store.load_meta()
        assert meta is not None and meta["lineage"]["restored_from"] == snapshot_id
        wait_for(
            lambda: client.get("/models").json()["models"][0].get("version") == version,
            "the API to swap in the restored version",
        )


def test_a_tampered_object_is_refused(
    settings: StreamSettings, redis_client: redis.Redis, s3_learner: S3Store, s3_url: str
) -> None:
    snapshot_id = wait_for(s3_learner.list, "a snapshot in S3")[-1].snapshot_id
    where = S3Location.parse(s3_url)
    client = boto3.session.Session().client("s3")
    key = f"{where.prefix}{snapshot_id}.snap"
    data = bytearray(client.get_object(Bucket=where.bucket, Key=key)["Body"].read())
    data[-100] ^= 0xFF  # inside the body: the header still lists, the whole file must not load
    client.put_object(Bucket=where.bucket, Key=key, Body=bytes(data))
    version = StateStore(redis_client, ShardKeys(settings.key_prefix, "main"), 0).version()
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as api:
        response = api.post("/admin/restore", headers=AUTH, json={"snapshot": snapshot_id})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "snapshot_refused"
        assert "BadSignatureError" in response.json()["error"]["message"]
    # Refused before any learner was asked: the served state did not move.
    assert StateStore(redis_client, ShardKeys(settings.key_prefix, "main"), 0).version() == version


def test_an_unreachable_store_stops_neither_learning_nor_serving(
    settings: StreamSettings,
    topics: StreamSettings,
    redis_client: redis.Redis,
    s3_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store goes away (here: a bucket that is not there) while the shard's state is in
    Redis: scheduled snapshots are skipped and learning goes on; an operator asking for
    one is told the store is unavailable (503)."""
    monkeypatch.setenv("HEADRACE_SNAPSHOT_URL", s3_url)
    with learning(topics, redis_client):
        pass  # state in Redis: the next learner resumes it, no cold start from the store
    missing = S3Location.parse(s3_url)._replace(bucket="headrace-no-such-bucket")
    monkeypatch.setenv("HEADRACE_SNAPSHOT_URL", missing.url)
    caplog.set_level(logging.WARNING, logger="headrace.learner")
    api = ApiSettings(admin_token=SecretStr(TOKEN))
    # Caught up on entry: it learned everything, store or not.
    with learning(topics, redis_client), running_app(api, settings) as client:
        wait_for(lambda: "snapshot not taken" in caplog.text, "a scheduled snapshot to fail")
        taken = client.post("/admin/snapshots", headers=AUTH)
        assert taken.status_code == 503, taken.text
        assert "StoreUnavailableError" in taken.json()["error"]["message"]
        listed = client.get("/admin/snapshots", headers=AUTH)
        assert listed.status_code == 503, listed.text
        assert client.get("/ready").status_code == 200
