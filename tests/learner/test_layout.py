"""The Redis layout's names and encodings, without Redis."""

from learner.epoch import NO_STATE, Stamp
from learner.layout import (
    ShardKeys,
    decode_offsets,
    encode_offsets,
    model_field,
    parse_announcement,
    stamp_of,
    state_fields,
    summary,
    variant_of,
    version_announcement,
)

KEYS = ShardKeys("acme", "main")


def test_every_key_of_a_shard_starts_with_its_base() -> None:
    shard_keys = [
        KEYS.state,
        KEYS.pending,
        KEYS.seen,
        KEYS.lease,
        KEYS.generation,
        KEYS.history,
        KEYS.control,
        KEYS.control_result("c1"),
        KEYS.user("u1"),
        KEYS.item("i1"),
    ]
    assert all(key.startswith("acme:shard:main:") for key in shard_keys)
    assert KEYS.relative(KEYS.aggregate("u:u1")) == "u:u1"
    assert KEYS.aggregate("u:u1") == KEYS.user("u1")


def test_offsets_and_model_fields_read_back() -> None:
    offsets = {2: 40, 0: 7, 1: 0}
    assert decode_offsets(encode_offsets(offsets)) == offsets
    assert encode_offsets(offsets) == b'{"0":7,"1":0,"2":40}'
    assert variant_of(model_field("tree")) == "tree"
    assert variant_of("meta") is None


def test_a_publish_fields_and_its_summary() -> None:
    fields = state_fields(Stamp(7, 3), {0: 5}, {"variants": {}}, b"core", {"main": b"m"})
    assert set(fields) == {"epoch", "version", "offsets", "meta", "core", "model:main"}
    reply = [fields["epoch"], fields["version"], fields["meta"]]
    assert summary(reply) == (Stamp(7, 3), {"variants": {}})
    assert summary([None, None, None]) == (NO_STATE, {})
    assert stamp_of({k.encode(): v for k, v in fields.items()}) == Stamp(7, 3)


def test_announcements_read_back_and_noise_is_ignored() -> None:
    assert parse_announcement(version_announcement(KEYS, Stamp(7, 9))) == ("main", Stamp(7, 9))
    # From a learner older than epochs: epoch 0.
    assert parse_announcement(b'{"shard": "main", "version": 9}') == ("main", Stamp(0, 9))
    for noise in (b"not json", b"{}", 7, b'{"shard": "main", "version": "x"}'):
        assert parse_announcement(noise) is None
