"""The label join, case by case, with exact counts."""

from learner.joins import Joins, Pending

WINDOW = 60.0
FEATURES = {"price": 1.0, "category": "merino"}


def impression(impression_id: str, ts: float, user: str = "u1", item: str = "i1") -> Pending:
    features = b'{"price":1.0,"category":"merino"}'
    return Pending(impression_id, user, item, ts, features, "merino", 1.0, {"main": 0.25})


def test_outcome_within_window_marks_it_bought_and_it_closes_positive_at_the_window() -> None:
    joins = Joins(WINDOW, max_pending=10)
    assert joins.add(impression("a", 0.0)) == []
    state, entry = joins.outcome("u1", "i1", "a", 1.0)
    assert state == "bought" and entry is not None and entry.bought
    assert entry.x() == FEATURES and entry.scores == {"main": 0.25}
    # The label is final only when the window closes: still pending, nothing counted yet.
    assert len(joins) == 1 and joins.counts == {}
    assert joins.advance(WINDOW - 1) == []
    (closed,) = joins.advance(WINDOW)
    assert (closed.impression_id, closed.closed) == ("a", "positive")
    assert closed.x() == FEATURES and closed.scores == {"main": 0.25}
    assert joins.counts == {"positive": 1}
    assert len(joins) == 0


def test_no_outcome_closes_as_negative_when_the_watermark_passes_the_window() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    assert joins.advance(WINDOW - 1) == []
    released = joins.advance(WINDOW)
    assert [(e.impression_id, e.closed) for e in released] == [("a", "negative")]
    assert joins.counts == {"negative_window": 1}


def test_closes_come_in_impression_time_order() -> None:
    joins = Joins(WINDOW, max_pending=10)
    for name, ts in (("c", 3.0), ("a", 1.0), ("b", 2.0)):
        joins.add(impression(name, ts, item=name))
    joins.outcome("u1", "b", "b", 3.0)
    released = joins.advance(WINDOW + 10)
    assert [(e.impression_id, e.closed) for e in released] == [
        ("a", "negative"),
        ("b", "positive"),
        ("c", "negative"),
    ]


def test_late_outcome_hands_back_the_tombstone_with_its_features_once() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.advance(WINDOW + 1)
    state, entry = joins.outcome("u1", "i1", "a", WINDOW + 1)
    assert state == "late" and entry is not None
    assert entry.x() == FEATURES and entry.scores == {"main": 0.25}
    joins.drop_features(entry)
    assert joins.outcome("u1", "i1", "a", WINDOW + 2) == ("duplicate", None)
    assert joins.counts == {"negative_window": 1, "late_outcome": 1, "duplicate_outcome": 1}


def test_an_outcome_after_the_window_is_late_even_before_the_watermark_closes_it() -> None:
    """A partition read behind the others holds the watermark back: the label must not
    depend on it."""
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    state, entry = joins.outcome("u1", "i1", "a", WINDOW)
    assert state == "late" and entry is not None and entry.x() == FEATURES
    joins.drop_features(entry)  # still open: the close needs them
    (closed,) = joins.advance(WINDOW)
    assert closed.closed == "negative" and closed.x() == FEATURES
    assert joins.outcome("u1", "i1", "a", WINDOW + 1) == ("duplicate", None)
    assert joins.counts == {"late_outcome": 1, "negative_window": 1, "duplicate_outcome": 1}


def test_an_outcome_two_windows_late_is_unknown_whether_or_not_the_tombstone_is_there() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    assert joins.outcome("u1", "i1", "a", 2 * WINDOW) == ("unknown", None)


def test_second_outcome_is_a_duplicate() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    assert joins.outcome("u1", "i1", "a", 1.0)[0] == "bought"
    assert joins.outcome("u1", "i1", "a", 2.0) == ("duplicate", None)
    joins.advance(WINDOW)
    assert joins.outcome("u1", "i1", "a", WINDOW + 1) == ("duplicate", None)
    assert joins.counts == {"positive": 1, "duplicate_outcome": 2}


def test_outcome_without_known_impression_is_unknown() -> None:
    joins = Joins(WINDOW, max_pending=10)
    assert joins.outcome("u1", "i1", "never-shown", 1.0) == ("unknown", None)
    assert joins.outcome("u9", "i9", None, 1.0) == ("unknown", None)
    assert joins.counts == {"unknown_outcome": 2}


def test_outcome_without_impression_id_joins_the_latest_impression_of_that_user_and_item() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.add(impression("b", 1.0))
    state, entry = joins.outcome("u1", "i1", None, 2.0)
    assert state == "bought" and entry is not None and entry.impression_id == "b"


def test_bound_closes_the_oldest_with_their_labels() -> None:
    joins = Joins(WINDOW, max_pending=3)
    for n in range(3):
        assert joins.add(impression(f"x{n}", float(n), item=f"i{n}")) == []
    joins.outcome("u1", "i1", "x1", 2.0)
    released = joins.add(impression("x3", 3.0))
    released += joins.add(impression("x4", 4.0))
    assert [(e.impression_id, e.closed) for e in released] == [
        ("x0", "negative"),
        ("x1", "positive"),
    ]
    assert joins.counts == {"negative_evicted": 1, "positive": 1}
    assert len(joins) == 3


def test_tombstones_are_forgotten_one_window_after_closing() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.outcome("u1", "i1", "a", 1.0)
    joins.advance(WINDOW)
    joins.advance(2 * WINDOW + 1)
    assert joins.outcome("u1", "i1", "a", 2 * WINDOW + 1) == ("unknown", None)
    assert joins.counts == {"positive": 1, "unknown_outcome": 1}


def test_delta_then_load_rebuilds_the_same_join() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.add(impression("b", 5.0, item="i2"))
    joins.add(impression("c", 6.0, item="i3"))
    joins.outcome("u1", "i1", "a", 1.0)
    joins.advance(WINDOW + 5.5)  # a closes positive, b negative; c still pending
    upserts, deletes = joins.delta()
    assert set(upserts) == {"a", "b", "c"} and deletes == []
    stored = {k: Pending.decode(k, v) for k, v in upserts.items()}

    restored = Joins(WINDOW, max_pending=10)
    restored.load(stored, joins.seq, joins.watermark)
    assert len(restored) == 1
    assert restored.outcome("u1", "i1", "a", WINDOW + 5.5) == ("duplicate", None)
    state, late = restored.outcome("u1", "i2", "b", WINDOW + 5.5)
    assert state == "late" and late is not None and late.x() == FEATURES
    state, bought = restored.outcome("u1", "i3", "c", WINDOW + 5.5)
    assert state == "bought" and bought is not None and bought.scores == {"main": 0.25}
    assert restored.counts == {"duplicate_outcome": 1, "late_outcome": 1}


def test_impressions_go_to_the_guards_once_guard_s_old_and_a_reload_knows_which_went() -> None:
    joins = Joins(WINDOW, max_pending=10, guard_s=10.0)
    joins.add(impression("a", 0.0))
    joins.add(impression("b", 5.0, item="i2"))
    joins.advance(12.0)
    assert [e.impression_id for e in joins.to_guard()] == ["a"]
    assert joins.to_guard() == []
    upserts, _ = joins.delta()
    restored = Joins(WINDOW, max_pending=10, guard_s=10.0)
    restored.load({k: Pending.decode(k, v) for k, v in upserts.items()}, joins.seq, 12.0)
    restored.advance(20.0)
    assert [e.impression_id for e in restored.to_guard()] == ["b"]


def test_guards_wait_for_the_close_when_their_delay_is_not_shorter_than_the_window() -> None:
    joins = Joins(WINDOW, max_pending=10, guard_s=WINDOW)
    joins.add(impression("a", 0.0))
    joins.advance(WINDOW - 1)
    assert joins.guard_s is None and joins.to_guard() == []
