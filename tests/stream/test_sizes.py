"""Record sizes and cutting a copy to fit, without Kafka (tests/stream/test_dlq.py holds
the same arithmetic to what the real broker accepts)."""

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from stream.sizes import BATCH_OVERHEAD, KEY_KEPT, Header, batch_size, fit, varint_size

HEADERS: list[Header] = [("reason", b"too_large"), ("source_offset", b"1234")]


@pytest.mark.parametrize(
    ("n", "size"),
    [(0, 1), (-1, 1), (63, 1), (64, 2), (-64, 1), (-65, 2), (8191, 2), (8192, 3), (2**31 - 1, 5)],
)
def test_varints_are_zigzag(n: int, size: int) -> None:
    assert varint_size(n) == size


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (None, None, []),
        (b"u1", b"{}", []),
        (b"u1", b"x" * 1_000_000, HEADERS),
        (b"k" * 70_000, b"", [("h", b"")]),
        (None, b"x" * 127, [(f"h{i}", b"v" * i) for i in range(300)]),
    ],
)
def test_batch_size_agrees_with_kafka_pythons_record_builder(
    key: bytes | None, value: bytes | None, headers: list[Header]
) -> None:
    # kafka-python writes the same v2 format; its builder is an independent count.
    assert DefaultRecordBatch.HEADER_STRUCT.size == BATCH_OVERHEAD
    theirs = BATCH_OVERHEAD + DefaultRecordBatchBuilder.size_in_bytes(0, 0, key, value, headers)
    assert batch_size(key, value, headers) == theirs


def test_a_record_that_fits_is_copied_whole() -> None:
    limit = batch_size(b"u1", b"x" * 5000, HEADERS)
    copy = fit(b"u1", b"x" * 5000, HEADERS, limit)
    assert (copy.key, copy.value, copy.headers, copy.cut) == (b"u1", b"x" * 5000, HEADERS, ())


def test_one_byte_over_cuts_the_value_to_exactly_the_limit() -> None:
    value = bytes(range(256)) * 40
    limit = batch_size(b"u1", value, HEADERS) - 1
    copy = fit(b"u1", value, HEADERS, limit)
    assert copy.cut == ("value",)
    assert copy.key == b"u1"
    assert copy.value is not None and value.startswith(copy.value)
    assert copy.size == limit
    assert dict(copy.headers)["truncated"] == b"value"
    assert copy.headers[: len(HEADERS)] == HEADERS


def test_a_megabyte_value_is_cut_to_a_small_topic() -> None:
    copy = fit(b"u1", b"x" * 1_000_000, HEADERS, 10_000)
    assert copy.cut == ("value",)
    assert 10_000 - 4 <= copy.size <= 10_000


def test_an_oversized_key_is_cut_and_the_value_kept() -> None:
    key, value = b"k" * 500_000, b'{"type": "click"}'
    copy = fit(key, value, HEADERS, 100_000)
    assert copy.cut == ("key",)
    assert copy.value == value
    assert copy.key is not None and key.startswith(copy.key) and len(copy.key) > KEY_KEPT
    assert dict(copy.headers)["original_key_size"] == b"500000"
    assert copy.size == 100_000


def test_when_key_and_value_are_both_huge_the_key_keeps_its_first_kilobyte() -> None:
    copy = fit(b"k" * 500_000, b"x" * 500_000, HEADERS, 100_000)
    assert copy.cut == ("key", "value")
    assert copy.key == b"k" * KEY_KEPT
    assert dict(copy.headers)["truncated"] == b"key,value"
    assert copy.size == 100_000


def test_a_small_key_is_never_cut_while_the_value_can_be() -> None:
    key = b"u" * KEY_KEPT
    copy = fit(key, b"x" * 50_000, HEADERS, 2_000)
    assert copy.key == key and copy.cut == ("value",)


def test_a_tombstone_with_a_huge_key_keeps_its_null_value() -> None:
    copy = fit(b"k" * 50_000, None, HEADERS, 5_000)
    assert copy.value is None and copy.cut == ("key",) and copy.size <= 5_000


def test_a_limit_below_the_headers_gives_the_smallest_copy() -> None:
    copy = fit(b"k" * 5_000, b"x" * 5_000, HEADERS, 50)
    assert (copy.key, copy.value) == (b"", b"")
    assert copy.size > 50  # the broker refuses it, and the side topic writes a stub


def test_every_cut_fits_exactly_when_it_can() -> None:
    for limit in range(200, 3_000, 37):
        for key_size in (0, 10, KEY_KEPT + 1, 4_000):
            key = b"k" * key_size if key_size else None
            copy = fit(key, b"v" * 5_000, HEADERS, limit)
            fits = batch_size(b"", b"", [*HEADERS, ("truncated", b"key,value")]) <= limit
            assert copy.size <= limit or not fits
