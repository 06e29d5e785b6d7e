"""The label join, case by case, with exact counts."""

from learner.joins import Joins, Pending

WINDOW = 60.0


def impression(impression_id: str, ts: float, user: str = "u1", item: str = "i1") -> Pending:
    features = b'{"price":1.0,"category":"merino"}'
    return Pending(impression_id, user, item, ts, features, "merino", 1.0)


def test_outcome_within_window_is_one_positive() -> None:
    joins = Joins(WINDOW, max_pending=10)
    assert joins.add(impression("a", 0.0)) == []
    example = joins.outcome("u1", "i1", "a")
    assert example is not None and example.label is True
    assert example.features == {"price": 1.0, "category": "merino"}
    assert joins.counts == {"positive": 1}
    assert len(joins) == 0


def test_no_outcome_closes_as_negative_when_the_watermark_passes_the_window() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    assert joins.advance(WINDOW - 1) == []
    released = joins.advance(WINDOW)
    assert [(e.impression_id, e.label) for e in released] == [("a", False)]
    assert joins.counts == {"negative_window": 1}


def test_late_outcome_is_counted_not_learned() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.advance(WINDOW + 1)
    assert joins.outcome("u1", "i1", "a") is None
    assert joins.counts == {"negative_window": 1, "late_outcome": 1}


def test_second_outcome_is_a_duplicate() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    assert joins.outcome("u1", "i1", "a") is not None
    assert joins.outcome("u1", "i1", "a") is None
    assert joins.counts == {"positive": 1, "duplicate_outcome": 1}


def test_outcome_without_known_impression_is_unknown() -> None:
    joins = Joins(WINDOW, max_pending=10)
    assert joins.outcome("u1", "i1", "never-shown") is None
    assert joins.outcome("u9", "i9", None) is None
    assert joins.counts == {"unknown_outcome": 2}


def test_outcome_without_impression_id_joins_the_latest_impression_of_that_user_and_item() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.add(impression("b", 1.0))
    example = joins.outcome("u1", "i1", None)
    assert example is not None and example.impression_id == "b"


def test_bound_closes_the_oldest_as_negatives() -> None:
    joins = Joins(WINDOW, max_pending=3)
    for n in range(3):
        assert joins.add(impression(f"x{n}", float(n))) == []
    released = joins.add(impression("x3", 3.0))
    released += joins.add(impression("x4", 4.0))
    assert [(e.impression_id, e.label) for e in released] == [("x0", False), ("x1", False)]
    assert joins.counts == {"negative_evicted": 2}
    assert len(joins) == 3


def test_tombstones_are_forgotten_one_window_after_closing() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.outcome("u1", "i1", "a")
    joins.advance(2 * WINDOW + 1)
    assert joins.outcome("u1", "i1", "a") is None
    assert joins.counts == {"positive": 1, "unknown_outcome": 1}


def test_delta_then_load_rebuilds_the_same_join() -> None:
    joins = Joins(WINDOW, max_pending=10)
    joins.add(impression("a", 0.0))
    joins.add(impression("b", 5.0, item="i2"))
    joins.outcome("u1", "i1", "a")
    upserts, deletes = joins.delta()
    assert set(upserts) == {"a", "b"} and deletes == []
    stored = {k: Pending.decode(k, v) for k, v in upserts.items()}

    restored = Joins(WINDOW, max_pending=10)
    restored.load(stored, joins.seq, joins.watermark)
    assert len(restored) == 1
    assert restored.outcome("u1", "i1", "a") is None  # a tombstone: duplicate
    example = restored.outcome("u1", "i2", "b")
    assert example is not None and example.features == {"price": 1.0, "category": "merino"}
    assert restored.counts == {"duplicate_outcome": 1, "positive": 1}
