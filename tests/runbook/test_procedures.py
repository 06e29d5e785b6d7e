"""Every procedure of docs/operations.md, run verbatim against a real Kafka, Redis, learner
and API, then checked for the outcome it promises."""

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from api.traffic import TrafficSplit
from headrace.sim.simulator import SimRecord, SimulatorConfig, generate, world
from learner import modelcodec
from learner.layout import ShardKeys
from learner.signing import Seal
from learner.statedump import ShardDump
from snapshots.codec import decode, signed_with
from snapshots.directory import DirectoryStore
from snapshots.errors import BadSignatureError
from snapshots.keys import VerifyKey
from snapshots.store import load
from stream.settings import StreamSettings
from tests.api.helpers import ApiProcess, request_body
from tests.learner.harness import (
    LearnerProcess,
    caught_up,
    end_offsets,
    learner_env,
    predictions,
    probe_rows,
    send,
    store,
    wait_until,
)
from tests.runbook.runbook import Shell, procedures
from tests.support import headrace, signing_key, verifier_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = SimulatorConfig(seed=33, count=4_000, n_users=200, n_items=80)
FIRST = 2_000
"""Events learned before the snapshot; the rest come after it."""
ADMIN_TOKEN = "first-admin-token-4f9c2a7e1b"

TESTED = {
    "restore-after-redis-loss": "test_restore_after_redis_loss_with_a_running_learner",
    "restore-after-redis-loss-without-learner": "test_restore_after_redis_loss_without_learner",
    "restore-after-bad-model": "test_restore_after_a_bad_model",
    "manual-rollback": "test_manual_rollback",
    "replay-from-snapshot": "test_replay_from_a_snapshot",
    "rotate-signing-key": "test_rotate_the_signing_key",
    "rotate-admin-token": "test_rotate_the_admin_token",
    "add-variant": "test_add_a_variant_then_shift_traffic",
    "shift-traffic": "test_add_a_variant_then_shift_traffic",
}


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    return list(generate(CONFIG))


class Deployment:
    """One shard's learner (restartable), its snapshot store, and the CLI, on one partition."""

    def __init__(self, settings: StreamSettings, client: redis.Redis, tmp: Path) -> None:
        self.settings = settings
        self.client = client
        self.tmp = tmp
        self.snapshot_dir = tmp / "snapshots"
        # The signing key in a file, as in production; the API gets the public key only.
        self.key_file = tmp / "signing.key"
        self.key_file.write_text(signing_key().text + "\n")
        self.key_file.chmod(0o600)
        self.env = learner_env(
            settings,
            signing_key_file=str(self.key_file),
            snapshot_dir=str(self.snapshot_dir),
            snapshot_interval_s=3600,
            admin_token=ADMIN_TOKEN,
            # Most impressions close (as negatives) within the short test stream, so the
            # first snapshot has learned enough to be last known good.
            join_window_s=20,
        )
        del self.env["HEADRACE_SIGNING_KEY"]  # the file instead
        self.keys = ShardKeys(settings.key_prefix, "main")
        self.learner: LearnerProcess | None = None
        self.api: ApiProcess | None = None

    def start_learner(self, env: dict[str, str] | None = None) -> None:
        self.learner = LearnerProcess(env or self.env, self.tmp / "learner.log")

    def stop_learner(self) -> None:
        assert self.learner is not None
        assert self.learner.stop() == 0
        self.learner = None

    def start_api(self, env: dict[str, str]) -> ApiProcess:
        if self.api is not None:
            self.api.close()
        self.api = ApiProcess(verifier_env(env), self.tmp / "api.log")
        self.api.wait_listening()
        return self.api

    def feed(self, records: list[SimRecord]) -> dict[int, int]:
        send(self.settings, records)
        ends = end_offsets(self.settings)
        wait_until(lambda: caught_up(self.client, self.settings, ends), 60, "the learner")
        return ends

    def cli(self, *args: str) -> str:
        done = headrace(self.env, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def snapshot(self) -> str:
        """`headrace snapshot create`; the id it printed."""
        return self.cli("snapshot", "create").split()[1]

    def meta(self) -> dict[str, Any]:
        meta = store(self.client, self.settings).load_meta()
        assert meta is not None
        return meta

    def lose_redis(self) -> None:
        """Everything of this deployment in Redis, gone (its own key prefix only)."""
        keys = list(self.client.scan_iter(match=f"{self.settings.key_prefix}:*", count=1000))
        self.client.delete(*keys)

    def shell(self, name: str, **extra: str) -> Shell:
        return Shell(name, {**self.env, **extra}, self.tmp)

    def close(self) -> None:
        for process in (self.learner, self.api):
            if process is not None:
                process.close()


@pytest.fixture
def deployment(
    one_partition: StreamSettings, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Deployment]:
    running = Deployment(one_partition, redis_client, tmp_path)
    try:
        yield running
    finally:
        running.close()


def _learned(meta: dict[str, Any]) -> dict[str, int]:
    return {name: v["n_learned"] for name, v in meta["variants"].items()}


def _snapshot_mid_stream(
    deployment: Deployment, records: list[SimRecord]
) -> tuple[str, dict[int, int], dict[str, int]]:
    """A learner takes FIRST records, a snapshot, then the rest: the snapshot id, the end
    offsets and what each variant had learned by the end."""
    deployment.start_learner()
    deployment.feed(records[:FIRST])
    snapshot_id = deployment.snapshot()
    ends = deployment.feed(records[FIRST:])
    return snapshot_id, ends, _learned(deployment.meta())


def test_every_procedure_in_the_runbook_has_a_test() -> None:
    assert set(procedures()) == set(TESTED)
    assert all(name in globals() for name in TESTED.values())


def test_restore_after_redis_loss_with_a_running_learner(
    deployment: Deployment, records: list[SimRecord]
) -> None:
    snapshot_id, ends, before = _snapshot_mid_stream(deployment, records)

    deployment.lose_redis()

    # The learner restores the newest snapshot by itself and replays from its offsets.
    def recovered() -> bool:
        meta = store(deployment.client, deployment.settings).load_meta()
        return meta is not None and caught_up(deployment.client, deployment.settings, ends)

    wait_until(recovered, 60, "the learner's own recovery")
    shell = deployment.shell("restore-after-redis-loss")
    shown = shell.run_next().stdout
    shell.finished()
    assert f"lineage restored from {snapshot_id} (with replay)" in shown
    assert shown.count(snapshot_id) == 2  # the lineage, and the listing
    assert "NO LEARNER" not in shown and "lag 0," in shown
    assert _learned(deployment.meta()) == before


def test_restore_after_redis_loss_without_learner(
    deployment: Deployment, records: list[SimRecord]
) -> None:
    snapshot_id, ends, before = _snapshot_mid_stream(deployment, records)
    assert deployment.learner is not None
    deployment.learner.kill()  # the machine went down with Redis: no clean stop
    deployment.learner = None
    deployment.lose_redis()

    shell = deployment.shell("restore-after-redis-loss-without-learner")
    out = shell.run_next().stdout
    shell.finished()
    assert f"restored {snapshot_id} as version" in out
    assert deployment.meta()["lineage"]["restored_from"] == snapshot_id

    deployment.start_learner()  # "then start the learners"
    wait_until(lambda: caught_up(deployment.client, deployment.settings, ends), 60, "the replay")
    assert _learned(deployment.meta()) == before


def test_restore_after_a_bad_model(deployment: Deployment, records: list[SimRecord]) -> None:
    deployment.start_learner()
    deployment.feed(records[:FIRST])
    snapshot_id = deployment.snapshot()
    good = DirectoryStore(deployment.snapshot_dir, signing_key().public).list()
    assert [i.snapshot_id for i in good if i.last_known_good] == [snapshot_id]
    ends = deployment.feed(records[FIRST:])  # the events that made the model bad

    shell = deployment.shell("restore-after-bad-model")
    out = shell.run_next().stdout
    shell.finished()
    assert f"lineage restored from {snapshot_id} (without replay)" in out
    meta = deployment.meta()
    assert meta["lineage"]["replay"] is False
    assert _learned(meta) == good[0].header.n_learned
    assert meta["offsets"] == {str(p): o for p, o in ends.items()}


def test_manual_rollback(deployment: Deployment, records: list[SimRecord]) -> None:
    deployment.start_learner()
    deployment.feed(records[:FIRST])
    snapshot_id = deployment.snapshot()
    deployment.feed(records[FIRST:])

    shell = deployment.shell("manual-rollback")
    out = shell.run_next().stdout
    shell.finished()
    assert "rolled back main of shard main to last known good" in out
    lineage = deployment.meta()["lineage"]
    assert lineage["rolled_back_variant"] == "main"
    assert lineage["reason"] == "labels from a broken producer"
    # The served model is the last-known-good snapshot's again.
    public = signing_key().public
    _, body = load(DirectoryStore(deployment.snapshot_dir, public), snapshot_id, public)
    good = modelcodec.loads(ShardDump.from_bytes(body).state[b"model:main"])
    probe = probe_rows(CONFIG)
    expected = [float(good.predict_proba_one(dict(x)).get(True, 0.0)) for x in probe]
    assert predictions(deployment.client, deployment.settings, probe)["main"] == expected


def test_replay_from_a_snapshot(deployment: Deployment, records: list[SimRecord]) -> None:
    deployment.start_learner()
    deployment.feed(records[:FIRST])
    snapshot_id = deployment.snapshot()
    deployment.feed(records[FIRST:])
    before = _learned(deployment.meta())
    probe = probe_rows(CONFIG)
    predicted = predictions(deployment.client, deployment.settings, probe)

    shell = deployment.shell("replay-from-snapshot", SNAPSHOT=snapshot_id)
    out = shell.run_next().stdout
    shell.finished()
    replayed = len(records) - FIRST
    assert f"replayed {replayed} events" in out
    meta = deployment.meta()
    assert meta["lineage"]["restored_from"] == snapshot_id and meta["lineage"]["replay"]
    assert _learned(meta) == before
    assert predictions(deployment.client, deployment.settings, probe) == predicted


def test_rotate_the_signing_key(deployment: Deployment, records: list[SimRecord]) -> None:
    old = signing_key().public
    deployment.start_learner()
    deployment.feed(records[:FIRST])
    deployment.snapshot()
    deployment.start_api(deployment.env)
    shell = deployment.shell("rotate-signing-key")

    shell.run_next()
    new = VerifyKey.parse(shell.env["HEADRACE_VERIFY_KEY"])
    assert new != old and shell.env["HEADRACE_VERIFY_PREVIOUS_KEYS"] == old.text
    # "restart them one by one": the API first, then the learner; it still signs as before.
    api = deployment.start_api(shell.env)
    deployment.stop_learner()
    deployment.start_learner(shell.env)
    _wait_active(deployment)
    wait_until(lambda: httpx.get(f"{api.url}/ready").status_code == 200, 30, "the API")

    shell.run_next()
    deployment.stop_learner()  # "restart the learners"
    deployment.start_learner(shell.env)
    _wait_active(deployment)
    deployment.feed(records[FIRST:])
    # The state in Redis verifies with the new key alone: nothing there needs the old one.
    raw = deployment.client.hgetall(deployment.keys.state)
    assert Seal((new,)).verify(raw, deployment.keys).signed_by == new
    before = sorted(
        i.snapshot_id for i in DirectoryStore(deployment.snapshot_dir, (new, old)).list()
    )

    out = shell.run_next().stdout
    created = out.split()[1]
    assert created not in before
    assert f"{len(before)} re-signed, 1 already signed with the current key, 0 refused" in out
    assert f"{len(before) + 1} verified, 0 refused" in out

    listing = shell.run_next().stdout
    shell.finished()
    assert "HEADRACE_VERIFY_PREVIOUS_KEYS" not in shell.env
    assert all(snapshot_id in listing for snapshot_id in [*before, created])
    for path in deployment.snapshot_dir.glob("*.snap"):
        blob = path.read_bytes()
        assert signed_with(blob, new)
        decode(blob, new)
        with pytest.raises(BadSignatureError):
            decode(blob, old)
    # "restart again": an API that knows only the new key serves the current state.
    api = deployment.start_api(shell.env)
    wait_until(lambda: httpx.get(f"{api.url}/ready").status_code == 200, 30, "the API")
    assert httpx.get(f"{api.url}/ready").json().get("refused") is None


def _wait_active(deployment: Deployment) -> None:
    """Until the learner just started owns the shard (and so handles SIGTERM)."""
    assert deployment.learner is not None
    mark = f":{deployment.learner.pid}:".encode()
    wait_until(
        lambda: mark in (deployment.client.get(deployment.keys.lease) or b""),
        60,
        "the restarted learner to take the shard",
    )


def test_rotate_the_admin_token(deployment: Deployment) -> None:
    api = deployment.start_api(deployment.env)
    assert _admin_status(api.url, ADMIN_TOKEN) == 200
    shell = deployment.shell("rotate-admin-token")

    shell.run_next()
    new_token = shell.env["HEADRACE_ADMIN_TOKEN"]
    assert new_token != ADMIN_TOKEN
    api = deployment.start_api(shell.env)  # "restart them one by one"
    shell.env["API"] = api.url  # the load balancer's address, in a deployment
    # During the rotation no admin call is refused, whichever token it carries.
    assert _admin_status(api.url, ADMIN_TOKEN) == 200
    assert _admin_status(api.url, new_token) == 200
    shell.run_next()

    shell.run_next()
    assert "HEADRACE_ADMIN_PREVIOUS_TOKENS" not in shell.env
    api = deployment.start_api(shell.env)  # "restart the replicas again"
    shell.env["API"] = api.url
    shell.run_next()
    shell.finished()
    assert _admin_status(api.url, ADMIN_TOKEN) == 403
    assert _admin_status(api.url, new_token) == 200


def _admin_status(url: str, token: str) -> int:
    return httpx.get(f"{url}/admin/snapshots", headers=_bearer(token)).status_code


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_add_a_variant_then_shift_traffic(deployment: Deployment, records: list[SimRecord]) -> None:
    deployment.start_learner()
    deployment.feed(records[:FIRST])
    before = _learned(deployment.meta())
    adding = deployment.shell("add-variant")

    adding.run_next()
    deployment.stop_learner()  # "restart them"
    deployment.start_learner(adding.env)
    deployment.feed(records[FIRST:])
    shown = adding.run_next().stdout
    adding.finished()
    learned = _learned(deployment.meta())
    assert set(learned) == {"main", "challenger"}
    # The new variant learns from the restart on, cold; the old one keeps its state.
    assert 0 < learned["challenger"] < learned["main"]
    assert learned["main"] > before["main"]
    assert f"challenger     tree     {learned['challenger']:>9}" in shown

    shifting = deployment.shell("shift-traffic")
    shifting.run_next()
    api = deployment.start_api(shifting.env)  # "restart them one by one"
    wait_until(lambda: httpx.get(f"{api.url}/ready").status_code == 200, 30, "the API")
    shifting.env["API"] = api.url
    models = shifting.run_next().stdout
    shifting.finished()
    shares = {v["name"]: v["traffic_share"] for v in _json(models)["models"][0]["variants"]}
    assert shares == pytest.approx({"main": 0.9, "challenger": 0.1})

    split = TrafficSplit({"main": 0.9, "challenger": 0.1})
    shop = world(CONFIG)
    rng = np.random.default_rng(5)
    served: Counter[str] = Counter()
    with httpx.Client(base_url=api.url) as http:
        for n in range(300):
            body = {
                **request_body(shop.request_for(n % CONFIG.n_users, rng, k=3)),
                "user_id": f"u{n}",
            }
            answer = http.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            variant = answer.json()["variant"]
            assert variant == split.variant_for(f"u{n}")
            served[variant] += 1
    assert 10 <= served["challenger"] <= 60 and served["main"] + served["challenger"] == 300


def _json(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text)
    return parsed
