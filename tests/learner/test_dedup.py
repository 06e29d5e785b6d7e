from learner.dedup import SeenIds


def test_a_repeated_id_is_seen_and_an_evicted_one_is_not() -> None:
    seen = SeenIds(capacity=3)
    assert [seen.check_and_add(i) for i in "abca"] == [False, False, False, True]
    seen.check_and_add("d")  # evicts a
    assert seen.check_and_add("a") is False
    assert len(seen) == 3


def test_chunks_rebuild_exactly_the_newest_capacity_ids() -> None:
    seen = SeenIds(capacity=4)
    stored: list[bytes] = []
    sizes = []
    for batch in (["a", "b", "c"], ["d", "e"], ["f"], ["g", "h"]):
        for event_id in batch:
            seen.check_and_add(event_id)
        chunk, drop = seen.delta()
        assert chunk is not None
        stored.append(chunk)
        del stored[:drop]
        seen.published(drop)
        sizes.append([len(c) // 8 for c in stored])
    # Only as many old chunks are dropped as leave at least `capacity` ids.
    assert sizes == [[3], [3, 2], [3, 2, 1], [2, 1, 2]]
    restored = SeenIds(capacity=4)
    restored.load(stored)
    assert [restored.check_and_add(i) for i in "efgh"] == [True, True, True, True]
    assert restored.check_and_add("d") is False
