"""Redis is not a way in: whatever is written into the state hash without the learner's key
is refused before anything is unpickled, by the API, by a learner resuming, by a snapshot.

Each attack writes a code-running pickle (it creates a marker file when unpickled) or a
genuine blob moved to where it does not belong, into the real test Redis."""

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.loading import load_shard
from api.settings import ApiSettings
from headrace.sim.simulator import generate
from learner import modelcodec
from learner.errors import UnverifiedStateError
from learner.layout import SIG, ShardKeys, versions_channel
from learner.redisconn import connect
from learner.signing import Seal, seal
from learner.state import StateStore
from learner.statedump import dump_shard
from snapshots.keys import SigningKey
from stream.settings import StreamSettings
from tests.api.conftest import SMALL, running_app
from tests.learner.harness import InProcessLearner, LearnerProcess, learner_env, wait_until
from tests.snapshots.test_codec import Evil
from tests.support import learner_seal, reader_seal, wait_for

pytestmark = pytest.mark.integration

SLOTS = ["core", "model:main", "model:tree"]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def published(settings: StreamSettings, redis_client: redis.Redis) -> Iterator[InProcessLearner]:
    """Two versions of a shard with a logistic and a tree variant, as a learner publishes."""
    trained = InProcessLearner(settings, redis_client, {"main": "logreg", "tree": "tree"})
    records = list(generate(SMALL))
    trained.process(records[:4_000])
    trained.publish()
    trained.process(records[4_000:])
    trained.publish()
    yield trained
    trained.close()


def _evil(slot: str, marker: Path) -> bytes:
    """A pickle that runs code, shaped to pass every check but the signature's."""
    raw = pickle.dumps(Evil(marker), protocol=pickle.HIGHEST_PROTOCOL)
    return modelcodec.MAGIC + b"\x00" + raw if slot.startswith("model:") else raw


def _readers(client: redis.Redis, keys: ShardKeys, slot: str = "model:main") -> None:
    """Everything that reads the state to deserialize it: each must refuse."""
    with pytest.raises(UnverifiedStateError) as learner:
        StateStore(client, keys, 0, learner_seal()).load()
    with pytest.raises(UnverifiedStateError) as dump:
        dump_shard(client, keys, learner_seal())  # never signed into a snapshot
    refusals = [learner, dump]
    if slot == "core":
        # The API never reads `core`, so it neither unpickles nor checks it.
        assert load_shard(client, keys, None, lambda names: names, reader_seal()) is not None
    else:
        with pytest.raises(UnverifiedStateError) as api:
            load_shard(client, keys, None, lambda names: names, reader_seal())
        refusals.append(api)
    for refusal in refusals:
        assert "refused before deserialization" in str(refusal.value)


def test_the_payload_is_live_so_the_refusals_prove_something(marker: Path) -> None:
    modelcodec.loads(_evil("model:main", marker))
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("slot", SLOTS)
def test_a_planted_pickle_in_any_slot_is_refused_before_unpickling(
    redis_client: redis.Redis, published: InProcessLearner, marker: Path, slot: str
) -> None:
    keys = published.keys
    redis_client.hset(keys.state, slot, _evil(slot, marker))
    _readers(redis_client, keys, slot)
    with pytest.raises(UnverifiedStateError, match=f"field '{slot}' was changed"):
        StateStore(redis_client, keys, 0, learner_seal()).load()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        ("unsigned", "carries no signature"),
        ("another key", "which is not accepted"),
        ("garbage record", "malformed"),
    ],
)
def test_a_writer_cannot_sign_for_itself(
    redis_client: redis.Redis, published: InProcessLearner, marker: Path, forge: str, why: str
) -> None:
    keys = published.keys
    raw = redis_client.hgetall(keys.state)
    fields = {k.decode(): v for k, v in raw.items() if k != SIG.encode()}
    fields["model:main"] = _evil("model:main", marker)
    version = int(fields["version"])
    if forge == "unsigned":
        redis_client.hdel(keys.state, SIG)
    elif forge == "another key":
        fields[SIG] = seal(SigningKey.generate(), keys, version, fields)
    else:
        fields[SIG] = b'{"alg": "ed25519", "signature": "not base64!"}'
    redis_client.hset(keys.state, mapping=fields)
    _readers(redis_client, keys)
    with pytest.raises(UnverifiedStateError, match=why):
        StateStore(redis_client, keys, 0, learner_seal()).load()
    assert not marker.exists()


def test_a_genuine_blob_moved_to_another_variant_or_an_older_one_is_refused(
    redis_client: redis.Redis, published: InProcessLearner
) -> None:
    keys = published.keys
    store = StateStore(redis_client, keys, 0, learner_seal())
    latest = redis_client.hgetall(keys.state)
    # A tree where the logistic model belongs: both signed, for the same version.
    redis_client.hset(keys.state, "model:main", latest[b"model:tree"])
    with pytest.raises(UnverifiedStateError, match="'model:main' was changed"):
        store.load()
    redis_client.hset(keys.state, mapping=latest)
    assert store.load() is not None
    # An older version's whole hash, its signature included, under the newer version number.
    published.process(generate(SMALL.model_copy(update={"seed": 5, "count": 500})))
    older = redis_client.hgetall(keys.state)
    published.publish()
    newer_version = int(redis_client.hget(keys.state, "version"))
    redis_client.hset(keys.state, mapping={**older, b"version": str(newer_version).encode()})
    with pytest.raises(UnverifiedStateError, match=f"signed as version {newer_version - 1}"):
        store.load()


def test_a_state_copied_to_another_shard_or_prefix_is_refused(
    redis_client: redis.Redis, published: InProcessLearner, settings: StreamSettings
) -> None:
    raw = redis_client.hgetall(published.keys.state)
    for keys in (
        ShardKeys(settings.key_prefix, "other"),
        ShardKeys(f"{settings.key_prefix}:neighbour", "main"),
    ):
        redis_client.hset(keys.state, mapping=raw)
        with pytest.raises(UnverifiedStateError, match="it was signed for shard 'main' under"):
            StateStore(redis_client, keys, 0, learner_seal()).load()
        redis_client.delete(keys.state)


def test_a_verified_state_loads_and_knows_its_key(
    redis_client: redis.Redis, published: InProcessLearner
) -> None:
    committed = StateStore(redis_client, published.keys, 0, learner_seal()).load()
    assert committed is not None and set(committed.models) == {"main", "tree"}
    assert committed.signed_by == learner_seal().signer.public  # type: ignore[union-attr]


def test_the_api_keeps_serving_and_says_why(
    settings: StreamSettings, redis_client: redis.Redis, published: InProcessLearner, marker: Path
) -> None:
    keys = published.keys
    with running_app(ApiSettings(), settings) as client:
        served = client.get("/models").json()["models"][0]["version"]
        # The attacker writes a pickle and a newer version number, announced as usual.
        version = int(redis_client.hget(keys.state, "version")) + 1
        redis_client.hset(
            keys.state,
            mapping={"model:main": _evil("model:main", marker), "version": str(version)},
        )
        announcement = f'{{"shard": "main", "version": {version}}}'
        redis_client.publish(versions_channel(settings.key_prefix), announcement)
        ready = wait_for(
            lambda: r if "refused" in (r := client.get("/ready")).json() else None,
            "/ready to report the refused version",
        )
        assert ready.status_code == 200  # still serving the version it had
        assert f"signed as version {version - 1}, not {version}" in ready.json()["refused"]["main"]
        body = {
            "user_id": "u00001",
            "context": {"query": "merino", "device": "mobile", "page": "search", "position": 0},
            "candidates": [{"item_id": "i1", "price": 12.5, "category": "merino"}],
        }
        answered = client.post("/predict", json=body)
        assert answered.status_code == 200 and answered.json()["version"] == served
        metrics = client.get("/metrics").text
        assert 'headrace_api_model_unverified_total{model="main"} 1.0' in metrics
    # A replica starting now has nothing it may serve, and says why.
    with running_app(ApiSettings(), settings, wait_ready=False) as fresh:
        ready = wait_for(
            lambda: r if "refused" in (r := fresh.get("/ready")).json() else None,
            "/ready to report the refused state",
        )
        assert ready.status_code == 503
        assert any("refused before deserialization" in r for r in ready.json()["reasons"])
    assert not marker.exists()


def test_a_restarting_learner_refuses_to_resume_from_planted_state(
    settings: StreamSettings,
    redis_client: redis.Redis,
    published: InProcessLearner,
    marker: Path,
    tmp_path: Path,
) -> None:
    published.close()  # the shard's lease is free: a learner takes it and loads the state
    redis_client.hset(published.keys.state, "core", _evil("core", marker))
    log = tmp_path / "learner.log"
    learner = LearnerProcess(learner_env(settings), log)
    try:
        wait_until(lambda: learner.proc.poll() is not None, 60, "the learner to refuse")
        assert learner.proc.returncode == 1
    finally:
        learner.close()
    text = log.read_text()
    assert "headrace: error: shard main: version 2 in Redis refused before deserialization" in text
    assert "field 'core' was changed after it was signed" in text
    assert not marker.exists()


def test_redis_refuses_a_client_without_the_password(settings: StreamSettings) -> None:
    assert settings.redis_password is not None  # scripts/test gives the test Redis one
    anonymous = redis.Redis.from_url(settings.redis_url)
    wrong = redis.Redis.from_url(settings.redis_url, password="not-the-password-0123456789")
    for client in (anonymous, wrong):
        with pytest.raises(redis.AuthenticationError):
            client.set(f"{settings.key_prefix}:planted", b"x")
        client.close()
    with connect(settings) as authenticated:
        assert authenticated.ping()


def test_a_seal_without_a_signing_key_cannot_publish(
    redis_client: redis.Redis, published: InProcessLearner
) -> None:
    from snapshots.errors import NoSigningKeyError

    store = StateStore(redis_client, published.keys, 60_000, Seal(reader_seal().accepted))
    assert published.lease.token is not None
    with pytest.raises(NoSigningKeyError):
        store.publish(published.lease.token, published.learner.delta())
