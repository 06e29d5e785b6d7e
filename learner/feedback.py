"""Delayed-feedback methods: what the learner learns from an impression, when, and how much.

A purchase arrives seconds to minutes after its impression; a non-purchase is known only
when the attribution window closes. Learning each label when it becomes known shows the
model every recent positive and none of the recent negatives, and it then over-predicts
by a large factor. Each method here is a published way out (docs/learner.md has the
measured trade-off):

- "window": learn every impression once its window closes, positive or negative, in
  impression-time order. Labels are unbiased; a purchase reaches the model one window
  late.
- "fnw": fake negatives with importance weights (Ktena et al., RecSys 2019). Learn every
  impression at once as a negative, and again as a positive when its purchase comes.
  The stream the model sees has b(1|x) = p/(1+p); weighting a positive by 1 + f and a
  negative by (1 - f)(1 + f), with f the model's own p(buy|x) when the impression
  happened, makes the weighted loss's expectation the one of the true labels.

A purchase after its window still teaches the model: its impression was learned as a
negative, so the features are learned again as a positive (weighted as the method's
positives are).
"""

from dataclasses import dataclass
from typing import Literal

Method = Literal["window", "fnw"]
METHODS: tuple[Method, ...] = ("window", "fnw")


@dataclass(frozen=True, slots=True)
class DelayedFeedback:
    """The weights a method gives at each moment; None: nothing is learned then."""

    method: Method

    @property
    def learns_at_impression(self) -> bool:
        """A (fake) negative is learned when the impression happens, and a purchase
        inside the window is learned when it comes."""
        return self.method == "fnw"

    @property
    def learns_at_close(self) -> bool:
        """Each impression is learned with its final label when its window closes."""
        return self.method == "window"

    def negative(self, p: float) -> float:
        """Weight of the fake negative learned at the impression, `p` the model's estimate."""
        return (1.0 - p) * (1.0 + p)

    def positive(self, p: float) -> float:
        """Weight of a positive learned when its purchase comes: inside the window with
        "fnw", or after it (a correction) with either method."""
        return 1.0 + p if self.method == "fnw" else 1.0
