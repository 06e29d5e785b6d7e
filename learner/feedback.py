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
- "esdfm": elapsed-time sampling (Yang et al., ES-DFM, AAAI 2021). Learn every impression
  once, a short elapsed time e after it, with the label known by then; a purchase after e
  is learned again as a positive. With f_dp = f * a, a the share of purchases that come
  after e, a positive is weighted 1 + f_dp and a negative (1 + f_dp)(1 - f)/(1 - f + f_dp),
  which makes the expectation the true labels' again. Most purchases come within minutes,
  so most labels are real ones and few are fake negatives, and the model is a few minutes
  behind instead of a window. "fnw" is the same at e = 0 (a = 1).

A purchase after its window still teaches the model: its impression was learned as a
negative, so the features are learned again as a positive (weighted as the method's
positives are).
"""

from dataclasses import dataclass
from typing import Literal

Method = Literal["window", "fnw", "esdfm"]
METHODS: tuple[Method, ...] = ("window", "fnw", "esdfm")


@dataclass(frozen=True, slots=True)
class DelayedFeedback:
    """The weights a method gives at each moment."""

    method: Method

    @property
    def learns_at_impression(self) -> bool:
        """A (fake) negative is learned when the impression happens, and a purchase
        inside the window is learned when it comes."""
        return self.method == "fnw"

    @property
    def learns_at_elapsed(self) -> bool:
        """Each impression is learned, with its label so far, an elapsed time after it,
        and a purchase after that when it comes."""
        return self.method == "esdfm"

    @property
    def learns_at_close(self) -> bool:
        """Each impression is learned with its final label when its window closes."""
        return self.method == "window"

    def negative(self, p: float, after: float = 1.0) -> float:
        """Weight of a negative learned before its label is final, `p` the model's estimate
        and `after` the share of purchases that come after that moment (1 at the
        impression)."""
        if self.method == "fnw":
            return (1.0 - p) * (1.0 + p)
        late = p * after
        return (1.0 + late) * (1.0 - p) / max(1.0 - p + late, 1e-12)

    def positive(self, p: float, after: float = 1.0) -> float:
        """Weight of a positive learned before the close: inside the window with "fnw",
        at or after the elapsed time with "esdfm", or after the window (a correction) with
        any method; `after` as for `negative`."""
        if self.method == "window":
            return 1.0
        if self.method == "fnw":
            return 1.0 + p
        return 1.0 + p * after
