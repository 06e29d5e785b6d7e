"""The garbage collector's pace in the server process.

A request's objects (hiredis's reply lists, the feature columns, the answer) are freed by
reference counting as soon as it is answered; the cyclic collector only finds them alive.
At Python's default (a youngest-generation pass every 700 net allocations of tracked
objects) the 16 requests in flight of a loaded worker set off a pass every ~9 requests of
100 candidates, and each walked every object those requests held. `gc.freeze()` (the
model holder, once the first models are in) keeps the app's long-lived objects out of
those passes; this keeps the requests' own out of them.
"""

import gc
from collections.abc import Callable


def young_threshold(allocations: int) -> Callable[[], None]:
    """Run the youngest generation's pass every `allocations` net allocations (0: leave
    Python's threshold as it is); returns what puts the previous threshold back."""
    previous = gc.get_threshold()
    if allocations > 0:
        gc.set_threshold(allocations, *previous[1:])
    return lambda: gc.set_threshold(*previous)
