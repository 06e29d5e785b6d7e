"""Admin and drift routes, against the real Redis: tokens, snapshots, restore, alerts.

The API holds no signing key: taking and restoring snapshots is the learner's work,
so those tests run a real learner (ShardWorker) that owns the shard."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.routes.admin import ADMIN_MAX_BODY_BYTES
from api.settings import ApiSettings
from guards.alerts import Alert
from headrace.sim.simulator import generate
from learner import alertstore
from learner.layout import ShardKeys
from learner.recovery import Snapshots
from learner.state import StateStore
from snapshots.settings import SigningSettings, SnapshotSettings
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, owning_learner, running_app
from tests.learner.harness import InProcessLearner
from tests.support import (
    WAIT_S,
    headrace,
    signer_env,
    signing_key,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.integration

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def snapshot_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("HEADRACE_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    return tmp_path / "snapshots"


@pytest.fixture
def owned(topics: StreamSettings, redis_client: redis.Redis, snapshot_env: Path) -> Iterator[None]:
    """A real learner owning the shard, caught up with SMALL: it takes and restores."""
    snapshots = Snapshots.from_settings(
        SnapshotSettings(snapshot_dir=snapshot_env, snapshot_interval_s=3600),
        _signing(),
    )
    with owning_learner(topics, redis_client, snapshots):
        yield


def _signing() -> SigningSettings:
    return SigningSettings(signing_key=SecretStr(signing_key().text))


@pytest.fixture
def trained(settings: StreamSettings, redis_client: redis.Redis) -> InProcessLearner:
    learner = InProcessLearner(settings, redis_client, {"main": "logreg"})
    learner.process(generate(SMALL))
    learner.publish()
    learner.close()  # no learner owns the shard: operations act under their own lease
    return learner


def test_admin_routes_are_off_without_a_configured_token(
    settings: StreamSettings, trained: InProcessLearner
) -> None:
    with running_app(ApiSettings(), settings) as client:
        response = client.get("/admin/snapshots", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "admin_off"


def test_admin_token_missing_is_401_and_wrong_is_403(
    settings: StreamSettings, trained: InProcessLearner, snapshot_env: Path
) -> None:
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        assert client.get("/admin/snapshots").status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
        for method, path in (("GET", "/admin/snapshots"), ("POST", "/admin/restore")):
            forged = client.request(method, path, headers=wrong, json={"snapshot": "latest"})
            assert forged.status_code == 403, path
        assert client.get("/admin/snapshots", headers=AUTH).status_code == 200


def test_snapshot_then_restore_without_replay_is_served_as_a_new_version(
    settings: StreamSettings, redis_client: redis.Redis, owned: None
) -> None:
    store = StateStore(redis_client, ShardKeys(settings.key_prefix, "main"), 0)
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        taken = client.post("/admin/snapshots", headers=AUTH)
        assert taken.status_code == 200, taken.text
        snapshot_id = taken.json()["snapshot_id"]
        listed = client.get("/admin/snapshots", headers=AUTH).json()
        assert [s["snapshot_id"] for s in listed["snapshots"]] == [snapshot_id]

        before = store.version()
        restored = client.post(
            "/admin/restore", headers=AUTH, json={"snapshot": snapshot_id, "replay": False}
        )
        assert restored.status_code == 200, restored.text
        version = restored.json()["version"]
        assert version == before + 1
        meta = store.load_meta()
        assert meta is not None
        assert meta["lineage"]["restored_from"] == snapshot_id
        assert meta["lineage"]["replay"] is False

        wait_for(
            lambda: client.get("/models").json()["models"][0].get("version") == version,
            "the API to swap in the restored version",
        )
        body = {
            "user_id": "u00001",
            "context": {"query": "merino", "device": "mobile", "page": "search", "position": 0},
            "candidates": [{"item_id": "i1", "price": 12.5, "category": "merino"}],
        }
        predicted = client.post("/predict", json=body)
        assert predicted.status_code == 200 and predicted.json()["version"] == version


@pytest.mark.parametrize(
    ("snapshot", "status", "code"),
    [
        ("../../etc/passwd", 422, "invalid_request"),
        ("main-20260101T000000000000Z-v000000000001", 404, "not_found"),
    ],
)
def test_restore_refuses_bad_and_unknown_ids(
    settings: StreamSettings,
    owned: None,
    snapshot_env: Path,
    snapshot: str,
    status: int,
    code: str,
) -> None:
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        response = client.post("/admin/restore", headers=AUTH, json={"snapshot": snapshot})
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code


def test_restore_refuses_a_tampered_snapshot_before_loading_it(
    settings: StreamSettings, owned: None, snapshot_env: Path
) -> None:
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        snapshot_id = client.post("/admin/snapshots", headers=AUTH).json()["snapshot_id"]
        path = snapshot_env / f"{snapshot_id}.snap"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        response = client.post("/admin/restore", headers=AUTH, json={"snapshot": snapshot_id})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "snapshot_refused"


def test_the_api_holds_no_signing_key_and_takes_no_snapshot_by_itself(
    settings: StreamSettings, trained: InProcessLearner, snapshot_env: Path
) -> None:
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        assert services.snapshots.signer is None
        for path, body in (("/admin/snapshots", {}), ("/admin/restore", {"snapshot": "latest"})):
            response = client.post(path, headers=AUTH, json=body)
            if path == "/admin/restore":
                # Nothing to restore either way; checked before any learner is asked.
                assert response.status_code == 404, response.text
                continue
            assert response.status_code == 409, response.text
            assert "holds no signing key" in response.json()["error"]["message"]
    assert not list(snapshot_env.glob("*.snap"))


def test_serve_refuses_to_start_with_the_signing_key(settings: StreamSettings) -> None:
    env = {"PATH": "/usr/bin:/bin", **stack_env(settings), **signer_env()}
    done = headrace(env, "serve", "--port", "1")
    assert done.returncode == 2
    assert "the API must not hold the learner's signing key" in done.stderr
    assert signing_key().text not in done.stderr + done.stdout


def test_the_app_refuses_a_signing_key_in_its_environment(
    settings: StreamSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_SIGNING_KEY", signing_key().text)
    app = create_app(ApiSettings(), settings)  # verifying keys from the environment
    with (
        pytest.raises(ValueError, match="must not hold the learner's signing key"),
        TestClient(app),
    ):
        pass


def test_rollback_without_a_running_learner_is_a_conflict(
    settings: StreamSettings, trained: InProcessLearner
) -> None:
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        response = client.post("/admin/rollback", headers=AUTH, json={})
        assert response.status_code == 409
        assert "no learner" in response.json()["error"]["message"]


def _alert(n: int, variant: str = "main") -> Alert:
    return Alert.make(
        n=n,
        ts=1_767_225_600.0 + n,
        model="main",
        variant=variant,
        detector="page_hinkley",
        signal="loss",
        value=0.5,
        threshold=0.3,
        window=100,
        message=f"loss up at {n}",
    )


def test_drift_alerts_are_listed_in_order_and_filtered(
    settings: StreamSettings, redis_client: redis.Redis, trained: InProcessLearner
) -> None:
    pipe = redis_client.pipeline()
    alertstore.append(pipe, settings.key_prefix, [_alert(1), _alert(2, "tree"), _alert(3)])
    pipe.execute()
    with running_app(ApiSettings(), settings) as client:
        every = client.get("/drift/alerts").json()["alerts"]
        assert [a["message"] for a in every] == ["loss up at 1", "loss up at 2", "loss up at 3"]
        main = client.get("/drift/alerts", params={"variant": "main"}).json()["alerts"]
        assert [a["message"] for a in main] == ["loss up at 1", "loss up at 3"]
        later = client.get("/drift/alerts", params={"since": 1_767_225_602.0}).json()["alerts"]
        assert [a["message"] for a in later] == ["loss up at 2", "loss up at 3"]


def sse_data(response: Any, n: int, timeout: float = WAIT_S) -> list[Any]:
    """The data of the next `n` events of an open event stream.

    Read in a thread: a stream that stays quiet (it sends keep-alives, so iterating it never
    ends by itself) fails the test after `timeout` s instead of holding it until the run's
    timeout. Leaving the `client.stream` block then ends the response, and the reader."""
    found: list[Any] = []

    def read() -> None:
        for line in response.iter_lines():
            if line.startswith("data: "):
                found.append(orjson.loads(line[6:]))
                if len(found) == n:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"{len(found)} of {n} events came within {timeout:g} s"
    return found


def test_the_live_stream_delivers_new_alerts_in_order(
    settings: StreamSettings, redis_client: redis.Redis, trained: InProcessLearner
) -> None:
    with running_app(ApiSettings(), settings) as client:
        feed = client.app.state.services.alerts  # type: ignore[attr-defined]
        with client.stream("GET", "/drift/alerts/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            # A stream delivers what comes after the feed has read where the alerts end:
            # raise them only then, or they would be history to it.
            wait_for(lambda: feed.position is not None, "the feed to find the end of the alerts")
            for n in (10, 11, 12):
                pipe = redis_client.pipeline()
                alertstore.append(pipe, settings.key_prefix, [_alert(n)])
                pipe.execute()
            received = [alert["message"] for alert in sse_data(response, 3)]
        assert received == ["loss up at 10", "loss up at 11", "loss up at 12"]


def test_the_token_is_checked_before_the_body_is_read(
    settings: StreamSettings, trained: InProcessLearner, snapshot_env: Path
) -> None:
    json_type = {"content-type": "application/json"}
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        # FastAPI parses a route's body before its dependencies: this used to be a 422.
        for headers, status in (({}, 401), ({"Authorization": "Bearer " + "x" * 32}, 403)):
            refused = client.post("/admin/restore", content=b"{" * 1000, headers=headers)
            assert refused.status_code == status, refused.text
        # With the token, a body is read up to a small limit, never past it.
        big = b" " * (ADMIN_MAX_BODY_BYTES + 1)
        response = client.post("/admin/restore", content=big, headers={**AUTH, **json_type})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:
            for _ in range(64):
                yield b" " * 1024

        response = client.post("/admin/rollback", content=chunks(), headers={**AUTH, **json_type})
        assert response.status_code == 413
        as_text = {**AUTH, "content-type": "text/plain"}
        assert client.post("/admin/rollback", content=b"{}", headers=as_text).status_code == 415
        # What fits goes on to the route as before.
        refused = client.post("/admin/restore", headers=AUTH, json={"snapshot": ""})
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "$.body.snapshot"
        # No learner runs here, and the API holds no signing key: the route answers that.
        reached = client.post("/admin/snapshots", headers=AUTH)
        assert reached.status_code == 409, reached.text
        assert "NoLearner" in reached.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/snapshots", {"model": "nope"}),
        ("/admin/restore", {"snapshot": "latest", "model": "nope"}),
        ("/admin/rollback", {"model": "nope"}),
    ],
)
def test_an_unknown_model_is_404(
    settings: StreamSettings,
    trained: InProcessLearner,
    snapshot_env: Path,
    path: str,
    body: dict[str, str],
) -> None:
    with running_app(ApiSettings(admin_token=SecretStr(TOKEN)), settings) as client:
        response = client.post(path, headers=AUTH, json=body)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
        assert "nope" in response.json()["error"]["message"]


class CountingRedis:
    """The real client, counting the stream entries its XREVRANGE calls return."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.entries = 0

    def xrevrange(self, *args: Any, **kwargs: Any) -> Any:
        found = self.client.xrevrange(*args, **kwargs)
        self.entries += len(found)
        return found


def test_the_newest_alerts_are_read_without_reading_them_all(
    settings: StreamSettings, redis_client: redis.Redis
) -> None:
    pipe = redis_client.pipeline()
    alertstore.append(pipe, settings.key_prefix, [_alert(n) for n in range(3_000)])
    alertstore.append(pipe, settings.key_prefix, [_alert(3_000, "tree")])
    alertstore.append(pipe, settings.key_prefix, [_alert(n) for n in range(3_001, 3_300)])
    pipe.execute()
    counting = CountingRedis(redis_client)
    client = cast(redis.Redis, counting)

    newest = alertstore.recent(client, settings.key_prefix, limit=1)
    assert [a["message"] for a in newest] == ["loss up at 3299"]
    assert counting.entries == 1

    counting.entries = 0
    tree = alertstore.recent(client, settings.key_prefix, variant="tree", limit=1)
    assert [a["message"] for a in tree] == ["loss up at 3000"]
    assert counting.entries <= 2 * alertstore.PAGE

    counting.entries = 0
    recent = alertstore.recent(client, settings.key_prefix, variant="main", limit=500)
    wanted = [*range(2_799, 3_000), *range(3_001, 3_300)]
    assert [a["message"] for a in recent] == [f"loss up at {n}" for n in wanted]
    assert counting.entries < 1_000


def test_a_bad_last_event_id_is_400_before_the_stream_starts(
    settings: StreamSettings, trained: InProcessLearner
) -> None:
    with running_app(ApiSettings(), settings) as client:
        for bad in ("garbage", "$", "12", "1-2-3", "-1-0", "١٢-3".encode(), f"{2**64}-0"):
            response = client.get("/drift/alerts/stream", headers={"Last-Event-ID": bad})
            assert response.status_code == 400, bad
            assert response.json()["error"]["code"] == "invalid_header"
            assert response.json()["error"]["field"] == "Last-Event-ID"


def test_with_api_keys_alerts_and_history_need_a_key_or_the_admin_token(
    settings: StreamSettings, trained: InProcessLearner
) -> None:
    key = "storefront-key-0123456789abc"
    api = ApiSettings(api_keys=[SecretStr(key)], admin_token=SecretStr(TOKEN))
    with running_app(api, settings) as client:
        for path in ("/drift/alerts", "/dashboard/history", "/drift/alerts/stream"):
            assert client.get(path).status_code == 401, path
            wrong = {"X-API-Key": "not-the-key-0123456789"}
            assert client.get(path, headers=wrong).status_code == 401, path
        for path in ("/drift/alerts", "/dashboard/history"):
            assert client.get(path, headers={"X-API-Key": key}).status_code == 200, path
            assert client.get(path, headers=AUTH).status_code == 200, path
        for path in ("/models", "/health", "/ready", "/metrics", "/dashboard"):
            assert client.get(path).status_code == 200, path
