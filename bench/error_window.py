"""The error window's cost per example: guards/rising.py against River's ADWIN.

    .venv/bin/python bench/error_window.py [--examples 200000] [--rate 0.3] [--rounds 3]

Both are fed the same seeded 0/1 errors (a rate of --rate) after a fill of 70,000 that
fills the window to its cap (65,536 examples), so every check tests the full window:
the guards' `RisingError` at the shipped settings (`HEADRACE_DRIFT_ERROR_*`; it also
keeps each block's labels, here the error's own bit) and River's
ADWIN at its defaults (checks every 32 examples, like the window). Prints CPU
microseconds per example (process time, which other work on the machine skews least),
the median over the rounds, and the ratio; it checks that both saw every example and
counts the cuts each made (a seeded stable rate: none expected from either).
"""

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from river import drift

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guards.rising import RisingError  # noqa: E402
from guards.settings import GuardSettings  # noqa: E402

FILL = 70_000


def window() -> RisingError:
    s = GuardSettings()
    return RisingError(s.drift_error_delta, s.drift_error_delta_settled, s.drift_error_settled)


def timed(update: Callable[[bool], bool], bits: list[bool]) -> tuple[float, int, int]:
    """CPU µs per example over `bits` after the fill, the cuts made there, and the
    examples fed in all."""
    fed = 0
    for b in bits[:FILL]:
        update(b)
        fed += 1
    cuts = 0
    began = time.process_time()
    for b in bits[FILL:]:
        cuts += update(b)
        fed += 1
    return (time.process_time() - began) / (len(bits) - FILL) * 1e6, cuts, fed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    bits = [rng.random() < args.rate for _ in range(FILL + args.examples)]
    ours: list[float] = []
    river: list[float] = []
    for _ in range(args.rounds):
        w = window()

        # The monitor's window also keeps the labels: the error's bit as the label here.
        def ours_update(b: bool, w: RisingError = w) -> bool:
            return w.update(b, b) is not None

        us, our_cuts, our_fed = timed(ours_update, bits)
        ours.append(us)
        a = drift.ADWIN()

        def adwin(b: bool, a: drift.ADWIN = a) -> bool:
            a.update(float(b))
            return bool(a.drift_detected)

        us, river_cuts, river_fed = timed(adwin, bits)
        river.append(us)
        assert our_fed == river_fed == len(bits), "both saw every example"
    ours_us, river_us = statistics.median(ours), statistics.median(river)
    print(f"examples: {args.examples:,} after a fill of {FILL:,}, error rate {args.rate}")
    print(f"error window (guards/rising.py): {ours_us:.2f} µs/example CPU (rounds {_runs(ours)})")
    print(f"River's ADWIN:                   {river_us:.2f} µs/example CPU (rounds {_runs(river)})")
    print(f"ratio window/ADWIN: {ours_us / river_us:.2f}")
    print(
        f"both fed {len(bits):,} examples; cuts after the fill: window {our_cuts}, "
        f"ADWIN {river_cuts}; the window holds {w.width:,} examples (its cap)"
    )


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
