"""What checking each event's partition costs the learner (stream/shards.py, RoutingCheck).

    .venv/bin/python bench/routing.py [--users 10000] [--partitions 12]

Prints the time of Java's murmur2 in pure Python (kafka-python's, the one the API routes
with) for user ids of a few lengths, and of `RoutingCheck.misrouted` for a user it has
seen before (the common case: users come back) and for one it has not.
"""

import argparse
import timeit
from collections.abc import Callable

from stream.shards import RoutingCheck, partition_for_key


def per_call_us(fn: Callable[[str], object], items: list[str], repeat: int) -> float:
    seconds = timeit.timeit(lambda: [fn(i) for i in items], number=repeat)
    return seconds / (repeat * len(items)) * 1e6


def measure(users: list[str], n: int) -> tuple[float, float, float]:
    """Microseconds a call: murmur2 alone, the check of a new user, of a seen user."""
    check = RoutingCheck(n)
    hashed = per_call_us(lambda u: partition_for_key(u.encode(), n), users, 5)
    first = per_call_us(lambda u: check.misrouted(u, 0), users, 1)
    seen = per_call_us(lambda u: check.misrouted(u, 0), users, 20)
    return hashed, first, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    for width in (8, 16, 36):
        users = [f"u{i:0{width - 1}d}" for i in range(args.users)]
        hashed, first, seen = measure(users, args.partitions)
        print(
            f"user id of {width:2d} bytes: murmur2 {hashed:.2f} us, "
            f"check of a new user {first:.2f} us, of a seen user {seen:.3f} us"
        )


if __name__ == "__main__":
    main()
