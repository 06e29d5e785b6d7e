"""When to roll the served model back to the last-known-good one: the decision only.

The last-known-good model is scored in shadow on the same examples as the
served one. Both losses of an example are paired, so most of the label noise
cancels in their difference. A rollback is decided when, over a full enough
window, the served mean loss is worse than the shadow's by a relative margin
(log loss scales with the positive rate), by an absolute floor (tiny losses
must not flap) and by a number of standard errors of the paired difference
(noise must not decide). A cooldown, in examples, spaces decisions out.
"""

import math
from collections import deque
from dataclasses import dataclass

from guards.alerts import Alert
from guards.persisted import STATE_VERSION
from guards.settings import GuardSettings

_BLOCKS = 40


@dataclass(frozen=True, slots=True)
class Decision:
    """Roll back: the served model has been worse than the shadow over `window` examples."""

    reason: str
    served_loss: float
    """Mean (clipped) log loss of the served model over the window."""
    shadow_loss: float
    """Mean (clipped) log loss of the last-known-good model over the same examples."""
    window: int
    n: int
    """The example count passed with the update that decided."""

    def alert(self, model: str, variant: str, ts: float) -> Alert:
        """The alert that says why (detector `rollback`, signal `loss`)."""
        return Alert.make(
            n=self.n,
            ts=ts,
            model=model,
            variant=variant,
            detector="rollback",
            signal="loss",
            value=self.served_loss,
            threshold=self.shadow_loss,
            window=self.window,
            message=self.reason,
        )


class RollbackDecider:
    """Paired rolling losses of the served and the shadow model; decides a rollback once.

    The window is kept as block sums (about 40 blocks), not per example: the
    decider is pickled with the learner's state at every publish.
    """

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.cooldown_until = -1
        self.state_version = STATE_VERSION
        """Example count before which no decision is made; survives `reset`."""
        self._block = max(1, settings.rollback_window // _BLOCKS)
        self.reset()

    def reset(self) -> None:
        """Empty the window (after a rollback, or when the shadow becomes a new last-known-good)."""
        blocks = max(1, self.settings.rollback_window // self._block)
        # Per block: served loss sum, shadow loss sum, sum of squared differences, examples.
        self._blocks: deque[tuple[float, float, float, int]] = deque(maxlen=blocks)
        self._full = (0.0, 0.0, 0.0, 0)
        self._open = [0.0, 0.0, 0.0]  # the block being filled
        self._open_n = 0

    def update(self, served_loss: float, shadow_loss: float, n: int) -> Decision | None:
        """One example's losses; `n` is the served variant's example count (it only grows)."""
        s = self.settings
        if not (s.guards_enabled and s.rollback_enabled):
            return None
        served, shadow = self._clip(served_loss), self._clip(shadow_loss)
        o = self._open
        o[0] += served
        o[1] += shadow
        o[2] += (served - shadow) ** 2
        self._open_n += 1
        if self._open_n == self._block:
            self._blocks.append((o[0], o[1], o[2], self._open_n))
            # Sums over <= 40 blocks, recomputed: no rounding drift however long it runs.
            self._full = (
                math.fsum(b[0] for b in self._blocks),
                math.fsum(b[1] for b in self._blocks),
                math.fsum(b[2] for b in self._blocks),
                sum(b[3] for b in self._blocks),
            )
            self._open, self._open_n = [0.0, 0.0, 0.0], 0
        f, o = self._full, self._open
        size = f[3] + self._open_n
        if size < s.rollback_min_events or n < self.cooldown_until:
            return None
        served_mean, shadow_mean = (f[0] + o[0]) / size, (f[1] + o[1]) / size
        gap = served_mean - shadow_mean
        if gap <= s.rollback_abs_margin or served_mean <= shadow_mean * (1 + s.rollback_rel_margin):
            return None
        variance = max((f[2] + o[2]) / size - gap * gap, 0.0)
        z = gap / math.sqrt(variance / size) if variance > 0.0 else math.inf
        if z <= s.rollback_z:
            return None
        self.cooldown_until = n + s.rollback_cooldown
        return Decision(
            f"served model's mean log loss {served_mean:.4f} exceeds the last-known-good's "
            f"{shadow_mean:.4f} by {gap:.4f} over the last {size} examples (z = {z:.1f})",
            served_mean,
            shadow_mean,
            size,
            n,
        )

    def _clip(self, loss: float) -> float:
        # NaN or inf is a model that failed on this example: the worst loss, not a crash.
        clip = self.settings.rollback_loss_clip
        return min(max(loss, 0.0), clip) if math.isfinite(loss) else clip
