"""The soak benchmark's bookkeeping (bench/soak_accounting.py): lost and twice-learned
events, the staleness of answers, and the windows that attribute them to faults."""

from collections import Counter

import numpy as np
import pytest

from bench.load_client import OK, SERVER_ERROR, TIMEOUT, Outcome
from bench.soak_accounting import (
    VersionTimeline,
    audit_counts,
    audit_ids,
    joins_balance,
    new_chunks,
    window_stats,
)


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def test_every_id_taken_in_once_is_neither_lost_nor_twice() -> None:
    audit = audit_ids(ids(5, 1, 9), ids(1, 9, 5))
    assert (audit.lost, audit.twice, audit.unexpected) == (0, 0, 0)
    assert (audit.expected, audit.committed) == (3, 3)


def test_a_missing_id_is_lost_and_a_repeated_one_learned_twice() -> None:
    audit = audit_ids(ids(1, 2, 3, 4), ids(1, 2, 2, 2, 4, 99))
    assert audit.lost == 1  # 3
    assert audit.twice == 2  # 2, two extra times
    assert audit.unexpected == 1  # 99


def test_counters_against_what_was_produced() -> None:
    rows = audit_counts(
        produced={"impression": 10, "click": 3, "malformed": 2},
        rejections={"invalid_json": 2},
        counts={"event_impression": 10, "event_click": 4, "rejected_invalid_json": 1},
    )
    by_name = {r.name: r for r in rows}
    assert set(by_name) == {"event_impression", "event_click", "rejected_invalid_json"}
    assert (by_name["event_click"].lost, by_name["event_click"].twice) == (0, 1)
    assert (by_name["rejected_invalid_json"].lost, by_name["rejected_invalid_json"].twice) == (1, 0)
    assert by_name["event_impression"].lost == by_name["event_impression"].twice == 0


def test_a_rejection_reason_nobody_expected_is_counted_twice() -> None:
    rows = audit_counts({}, {}, {"rejected_schema": 2})
    assert [(r.name, r.expected, r.counted, r.twice) for r in rows] == [
        ("rejected_schema", 0, 2, 2)
    ]


def test_joins_balance_counts_impressions_neither_settled_nor_pending() -> None:
    counts = {"event_impression": 100}
    joins = {"positive": 5, "negative_window": 80, "negative_evicted": 2, "pending": 10}
    assert joins_balance(counts, joins) == 3  # quarantined
    assert joins_balance(counts, {**joins, "duplicate_impression": 3}) == 0
    assert joins_balance(counts, {**joins, "positive": 9}) == -1  # one learned twice


@pytest.mark.parametrize(
    ("known", "fetched", "new"),
    [
        (None, [b"a", b"b"], [b"a", b"b"]),
        (b"a", [b"a", b"b", b"c"], [b"b", b"c"]),
        (b"c", [b"a", b"b", b"c"], []),
        (b"z", [b"a", b"b"], None),
        (b"a", [], None),
    ],
)
def test_new_chunks_are_those_after_the_last_one_taken(
    known: bytes | None, fetched: list[bytes], new: list[bytes] | None
) -> None:
    assert new_chunks(known, fetched) == new


def timeline(*points: tuple[float, int]) -> VersionTimeline:
    line = VersionTimeline()
    for t, version in points:
        line.observe(t, version)
    return line


def test_the_version_in_redis_is_fresh_and_an_older_one_stale_since_replaced() -> None:
    line = timeline((0.0, 1), (1.0, 2), (1.5, 2), (2.0, 3))
    assert line.times == [0.0, 1.0, 2.0]  # a repeated poll is no change
    assert line.stale_s(1.5, 1.6, 2) == 0.0
    assert line.stale_s(2.5, 2.6, 2) == pytest.approx(0.5)
    assert line.stale_s(2.5, 2.6, 1) == pytest.approx(1.5)
    assert line.stale_s(-1.0, -0.9, 7) == 0.0  # before anything was seen


def test_a_version_in_redis_at_any_moment_of_the_request_is_fresh() -> None:
    line = timeline((0.0, 1), (1.0, 2), (2.0, 3))
    # Sent while 1 was in Redis, answered by 2 or 3: the API read a model current then.
    assert line.stale_s(0.5, 2.5, 3) == 0.0
    assert line.stale_s(0.5, 1.5, 2) == 0.0
    assert line.stale_s(0.5, 0.9, 4) == 0.0  # newer than anything polled yet
    assert line.stale_s(2.5, 2.6, 1) == pytest.approx(1.5)  # sent long after 1 was replaced


def test_a_version_redis_went_back_from_is_stale_since_it_went_back() -> None:
    # Redis lost its last writes at t=2: version 2 is gone, the learner publishes 1, then 3.
    line = timeline((0.0, 1), (1.0, 2), (2.0, 1), (3.0, 3))
    assert line.stale_s(2.5, 2.6, 2) == pytest.approx(0.5)
    assert line.stale_s(3.5, 3.6, 2) == pytest.approx(1.5)


def test_an_older_version_never_seen_is_stale_since_a_newer_one_was() -> None:
    line = timeline((0.0, 5), (1.0, 7))
    assert line.stale_s(1.5, 1.6, 6) == pytest.approx(0.5)
    assert line.stale_s(1.5, 1.6, 4) == pytest.approx(1.5)


def test_longest_gap_between_versions_in_a_window() -> None:
    line = timeline((0.0, 1), (1.0, 2), (4.0, 3), (4.5, 4))
    assert line.longest_gap_s(0.5, 5.0) == pytest.approx(3.0)
    assert line.longest_gap_s(4.2, 4.4) == pytest.approx(0.2)


def test_windows_count_each_request_where_it_was_sent() -> None:
    line = timeline((0.0, 1), (10.0, 2), (20.0, 3))
    outcomes = [
        Outcome(1.0, 0.010, OK, 200, 1),
        Outcome(2.0, 0.020, OK, 200, 1, degraded=True),
        Outcome(11.0, 1.0, TIMEOUT),
        Outcome(12.0, 0.005, SERVER_ERROR, 503, replica=0),
        Outcome(13.0, 0.030, OK, 200, 1, failover=True),  # 3 s after version 2 appeared
        Outcome(25.0, 0.010, OK, 200, 3),
        Outcome(40.0, 0.010, OK, 200, 3),  # after the last window
    ]
    before, fault = window_stats([("before", 0.0, 10.0), ("fault", 10.0, 30.0)], outcomes, line)
    assert before.outcomes == Counter({OK: 2})
    assert (before.degraded, before.max_stale_s, before.stale_answers) == (1, 0.0, 0)
    assert before.longest_version_gap_s == pytest.approx(10.0)
    assert fault.requests == 4
    assert fault.outcomes == Counter({OK: 2, TIMEOUT: 1, SERVER_ERROR: 1})
    assert fault.failovers == 1
    assert fault.max_stale_s == pytest.approx(3.0)
    assert fault.stale_answers == 1
    assert fault.p99_ms == pytest.approx(29.5, abs=0.5)  # the timeout has no latency
    assert fault.longest_version_gap_s == pytest.approx(10.0)
