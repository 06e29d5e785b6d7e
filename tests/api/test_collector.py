"""The server process's collector pace: set for the lifespan, then put back."""

import gc

from api.collector import young_threshold


def test_the_young_threshold_is_set_and_put_back() -> None:
    before = gc.get_threshold()
    restore = young_threshold(12_345)
    try:
        assert gc.get_threshold() == (12_345, *before[1:])
    finally:
        restore()
    assert gc.get_threshold() == before


def test_zero_leaves_pythons_threshold() -> None:
    before = gc.get_threshold()
    restore = young_threshold(0)
    assert gc.get_threshold() == before
    restore()
    assert gc.get_threshold() == before
