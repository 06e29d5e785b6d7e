"""Drift monitor of one variant: the progressive loss, the inputs and the predictions.

Called once per learned example, in order. The 0/1 error (the prediction
at a cut against the label) goes to a one-sided adaptive window on every
example (guards/rising.py): where a drift first shows on most public
benchmark streams. The label rate goes to such a window too, both ways: a new concept
whose positives are more or less common, even one the model does no worse on. The loss
goes to ADWIN and Page-Hinkley as block means relative to a scale set during a warm-up: raw
per-example log loss at a 5 % positive rate is so heavy-tailed that
detectors fed with it alarm on noise. A detection becomes an alert only if
the recent loss is clearly above the loss before it (detectors also fire on
improvements). Inputs go to KSWIN (sub-sampled: a KS test is costly) and,
with the predictions, to a windowed PSI. Everything is deterministic and
picklable: the monitor is part of the learner's committed state.

A loss or error alert stays open until the signal says the drift is over; then the
monitor returns a second record, `Alert.end(...)`, with `ends` set to the alert's id:
the error, when the window finds it significantly lower again (the model adapted); the
loss, when the mean of the last `drift_recent_blocks` blocks is back under the alert's
threshold; both, at `reset()` (a rollback), on the next example.
"""

import math
from collections import deque
from collections.abc import Mapping

from river import drift

from guards.alerts import Alert
from guards.kswin import KSWIN
from guards.persisted import STATE_VERSION
from guards.psi import PopulationStability
from guards.ranking import RankingDrop
from guards.rising import Cut, MixCut, RisingError, RisingMean, RisingRate
from guards.settings import GuardSettings

PERFORMANCE_SIGNALS = frozenset({"loss", "mean_loss", "error", "ranking"})
"""Alert signals that say the model itself does worse (not only that its inputs or its
labels' rate moved)."""


class DriftMonitor:
    """The drift detectors of one variant of one model."""

    def __init__(self, model: str, variant: str, settings: GuardSettings) -> None:
        self.model, self.variant, self.settings = model, variant, settings
        self.state_version = STATE_VERSION
        self.n = 0
        """Examples seen, over the monitor's whole life (alert ids rely on it never repeating)."""
        self.reset()

    def reset(self) -> None:
        """Forget everything learned about the stream (after a rollback): warm up again.

        Open loss and error alerts end: their records come with the next `update`."""
        s = self.settings
        still_open = [
            *getattr(self, "_loss_open", []),
            getattr(self, "_error_open", None),
            getattr(self, "_mean_loss_open", None),
        ]
        self._pending_ends: list[Alert] = [a for a in still_open if a is not None]
        self._loss_open: list[Alert] = []
        self._error_open: Alert | None = None
        self._mean_loss_open: Alert | None = None
        self._rearm()
        # Inputs do not depend on the model, but the aggregates behind u_* and i_* do settle.
        self._inputs_from = self.n + s.drift_warmup
        self._kswin = {
            name: KSWIN(
                alpha=s.drift_kswin_alpha,
                window_size=s.drift_kswin_window,
                stat_size=s.drift_kswin_stat_size,
                seed=s.drift_kswin_seed + i,
            )
            for i, name in enumerate(s.drift_kswin_features)
        }
        self._error = RisingError(
            s.drift_error_delta, s.drift_error_delta_settled, s.drift_error_settled
        )
        self._mean_loss = RisingMean(
            s.drift_loss_window_delta,
            s.drift_loss_window_delta_settled,
            s.drift_loss_window_settled,
        )
        # The label rate does not depend on the model; a change either way is news.
        self._label = RisingRate(s.drift_label_delta)
        # signal -> (feature name, or None for the prediction; its PSI tracker)
        signals: dict[str, str | None] = {f"feature:{name}": name for name in s.drift_psi_features}
        if s.drift_psi_predictions:
            signals["prediction"] = None
        self._psi = {
            signal: (name, PopulationStability(s.drift_psi_window, s.drift_psi_bins))
            for signal, name in signals.items()
        }

    def _rearm(self) -> None:
        s = self.settings
        self._armed_at = self.n + s.drift_warmup
        self._calibrate_from = self.n + s.drift_warmup // 2
        self._scale = 0.0  # the calibration's sum of losses until armed, then its mean
        self._block_sum, self._block_n = 0.0, 0
        # The level before the recent blocks: the last blocks that left the recent window, and
        # until there are enough of them, the calibration (level 1 by definition) as the
        # blocks it spans. Sliding, so a slow creep of the loss moves the yardstick with it.
        calibration = max(1, (s.drift_warmup - s.drift_warmup // 2) // s.drift_block)
        self._before: deque[float] = deque(
            [1.0] * min(calibration, s.drift_reference_blocks), maxlen=s.drift_reference_blocks
        )
        self._recent: deque[float] = deque(maxlen=s.drift_recent_blocks)
        # Raw block means after a loss alert, warm-up or not: when the alert is over.
        self._end_sum, self._end_n = 0.0, 0
        self._end_recent: deque[float] = deque(maxlen=s.drift_recent_blocks)
        self._adwin = drift.ADWIN(delta=s.drift_adwin_delta, clock=1)
        self._ph = drift.PageHinkley(
            min_instances=s.drift_recent_blocks,
            delta=s.drift_ph_delta,
            threshold=s.drift_ph_threshold,
            mode="up",
        )
        self._ranking = RankingDrop(
            s.drift_ranking_window,
            s.drift_ranking_reference,
            s.drift_ranking_every,
            s.drift_ranking_min_drop,
            s.drift_ranking_z,
        )

    def update(
        self, loss: float, x: Mapping[str, float | str], p: float, ts: float, y: bool
    ) -> list[Alert]:
        """Account for one labelled example: its log loss, its features, the prediction
        served for it and its label."""
        s = self.settings
        self.n += 1
        if not (s.guards_enabled and s.drift_enabled):
            return []
        # NaN or inf is a model that failed on this example: the worst loss, not a crash.
        loss = min(max(loss, 0.0), s.drift_loss_clip) if math.isfinite(loss) else s.drift_loss_clip
        alerts = self._reset_ends(ts) if self._pending_ends else []
        if self._loss_open:
            alerts.extend(self._loss_ends(loss, ts))
        alerts.extend(self._loss(loss, ts))
        if s.drift_error_enabled:
            alerts.extend(self._error_update((p >= s.drift_error_cut) != y, y, ts))
        if s.drift_loss_window_enabled:
            alerts.extend(self._mean_loss_update(loss, y, ts))
        if s.drift_label_enabled:
            alerts.extend(self._label_update(y, ts))
        if s.drift_ranking_enabled and self.n > self._armed_at:
            alerts.extend(self._ranking_update(y, p, ts))
        if self.n <= self._inputs_from:
            return alerts
        if s.drift_kswin_enabled and self.n % s.drift_kswin_every == 0:
            alerts.extend(self._kswin_update(x, ts))
        if s.drift_psi_enabled:
            alerts.extend(self._psi_update(x, p, ts))
        return alerts

    def _loss(self, loss: float, ts: float) -> list[Alert]:
        s = self.settings
        if self.n <= self._armed_at:
            if self.n > self._calibrate_from:
                self._scale += loss
            if self.n == self._armed_at:
                self._scale = max(self._scale / (self.n - self._calibrate_from), 1e-6)
            return []
        self._block_sum += loss
        self._block_n += 1
        if self._block_n < s.drift_block:
            return []
        level = self._block_sum / self._block_n / self._scale
        self._block_sum, self._block_n = 0.0, 0
        fired: dict[str, tuple[float, float]] = {}  # detector -> its statistic and threshold
        if s.drift_adwin_enabled:
            adwin = self._adwin
            width, total, spread = adwin.width, adwin.total, adwin.variance
            adwin.update(level)
            if adwin.drift_detected:
                fired["adwin"] = _adwin_test(width, total, spread, level, adwin)
        if s.drift_ph_enabled:
            ph = self._ph
            ph.update(level)
            if ph.drift_detected:
                fired["page_hinkley"] = (ph._sum_increase - ph._min_increase, ph.threshold)
        if len(self._recent) == self._recent.maxlen:
            self._before.append(self._recent[0])
        self._recent.append(level)
        before = sum(self._before) / len(self._before)
        recent = sum(self._recent) / len(self._recent)
        limit = before * (1.0 + s.drift_min_increase)
        if not fired or recent < limit:
            return []
        window = len(self._recent) * s.drift_block
        value, threshold = recent * self._scale, limit * self._scale
        message = (
            f"mean log loss of the last {window} examples is {value:.4f}, "
            f"{100 * (recent / before - 1):.0f}% above {before * self._scale:.4f} before them"
        )
        found = (value, threshold, window)
        alerts = []
        for d, (statistic, line) in fired.items():
            test = f" (test statistic {statistic:.4g}, threshold {line:.4g})"
            alerts.append(
                self._alert(d, "loss", found, ts, f"{d}: {message}{test}", (statistic, line))
            )
        # One drift, one alert: the model now learns the new concept and its loss falls again.
        self._rearm()
        self._loss_open = alerts
        return alerts

    def _loss_ends(self, loss: float, ts: float) -> list[Alert]:
        s = self.settings
        self._end_sum += loss
        self._end_n += 1
        if self._end_n < s.drift_block:
            return []
        self._end_recent.append(self._end_sum / self._end_n)
        self._end_sum, self._end_n = 0.0, 0
        if len(self._end_recent) < s.drift_recent_blocks:
            return []
        recent = sum(self._end_recent) / len(self._end_recent)
        line = min(a.threshold for a in self._loss_open)
        if recent > line:
            return []
        window = len(self._end_recent) * s.drift_block
        ends = [
            a.end(
                ts=ts,
                value=recent,
                threshold=line,
                window=window,
                message=(
                    f"{a.detector}: over: mean log loss of the last {window} examples is "
                    f"{recent:.4f}, back under {line:.4f} (alert {a.id})"
                ),
            )
            for a in self._loss_open
        ]
        self._loss_open = []
        self._end_recent.clear()
        return ends

    def _reset_ends(self, ts: float) -> list[Alert]:
        ends = [
            a.end(
                ts=ts,
                value=a.value,
                threshold=a.threshold,
                window=0,
                message=f"{a.detector}: over: the monitor was reset (a rollback) (alert {a.id})",
            )
            for a in self._pending_ends
        ]
        self._pending_ends = []
        return ends

    def _error_update(self, wrong: bool, y: bool, ts: float) -> list[Alert]:
        cut = self._error.update(wrong, y)
        if cut is None:
            return []
        s = self.settings
        opened = self._error_open
        explained = None
        if s.drift_error_label_mix and isinstance(cut, MixCut) and cut.rise:
            explained = _explained(cut, "error")
        self._error_open, alerts = self._rise(
            cut, "error", "error rate", opened, s.drift_error_min_increase, ts, explained
        )
        return alerts

    def _mean_loss_update(self, loss: float, y: bool, ts: float) -> list[Alert]:
        s = self.settings
        clip = s.drift_loss_window_clip
        cut = self._mean_loss.add(min(loss, clip) / clip, y)
        if cut is None:
            return []
        # The window holds losses divided by the clip: alerts speak in log loss.
        scaled = (cut.before * clip, cut.after * clip, cut.n_before, cut.n_after)
        test = (cut.statistic * clip, cut.bound * clip)
        explained = None
        if isinstance(cut, MixCut):
            mixed = (cut.label_before, cut.label_after, cut.expected * clip)
            cut = MixCut(*scaled, *test, *mixed)
            if s.drift_loss_label_mix and cut.rise:
                explained = _explained(cut, "mean log loss")
        else:
            cut = Cut(*scaled, *test)
        what = f"mean log loss (clipped at {clip:g})"
        increase = s.drift_loss_window_min_increase
        opened = self._mean_loss_open
        self._mean_loss_open, alerts = self._rise(
            cut, "mean_loss", what, opened, increase, ts, explained
        )
        return alerts

    def _rise(
        self,
        cut: Cut,
        signal: str,
        what: str,
        opened: Alert | None,
        increase: float,
        ts: float,
        explained: tuple[float, str] | None = None,
    ) -> tuple[Alert | None, list[Alert]]:
        """A cut of a one-sided window: the alert it opens or closes, and the one now open.

        `explained`: for a rise, the newer level the label rate alone explains and what
        says so; a rise is then judged from the higher of it and the older level."""
        test = (cut.statistic, cut.bound)
        figures = (
            f"{what} of the last {cut.n_after} examples is {cut.after:.4f}, "
            f"{'up' if cut.rise else 'down'} from {cut.before:.4f} over the {cut.n_before} "
            f"before them (difference {cut.statistic:+.4f}, bound {cut.bound:.4f})"
        )
        if not cut.rise:
            # A fall: the lower level is the yardstick from now on; an open alert is over.
            if opened is None:
                return None, []
            message = f"adwin: over: {figures} (alert {opened.id})"
            end = opened.end(
                ts=ts,
                value=cut.after,
                threshold=cut.before,
                window=cut.n_after,
                message=message,
                test=test,
            )
            return None, [end]
        base, why = cut.before, ""
        if explained is not None and explained[0] > base:
            # Not also tested against the bound: the cut has dropped the older part, and a
            # rise just past the bound that the labels explain a little of would be lost.
            base, why = explained[0], f"; {explained[1]}"
        threshold = base * (1.0 + increase)
        # One drift, one alert: while one is open, a further rise is the same drift.
        if opened is not None or cut.after <= threshold:
            return opened, []
        message = f"adwin: {figures}{why}; alerts above {threshold:.4f}"
        found = (cut.after, threshold, cut.n_after)
        alert = self._alert("adwin", signal, found, ts, message, test)
        return alert, [alert]

    def _label_update(self, y: bool, ts: float) -> list[Alert]:
        cut = self._label.update(y)
        if cut is None:
            return []
        change = self.settings.drift_label_min_change
        threshold = cut.before * (1.0 + change if cut.rise else 1.0 - change)
        if cut.after <= threshold if cut.rise else cut.after >= threshold:
            return []
        message = (
            f"adwin: label rate of the last {cut.n_after} examples is {cut.after:.4f}, "
            f"{'up' if cut.rise else 'down'} from {cut.before:.4f} over the {cut.n_before} "
            f"before them (difference {cut.statistic:+.4f}, bound {cut.bound:.4f}); "
            f"alerts {'above' if cut.rise else 'below'} {threshold:.4f}"
        )
        found = (cut.after, threshold, cut.n_after)
        return [self._alert("adwin", "label", found, ts, message, (cut.statistic, cut.bound))]

    def _ranking_update(self, y: bool, p: float, ts: float) -> list[Alert]:
        ranking = self._ranking
        ranking.update(y, p)
        if not ranking.drift_detected:
            return []
        s = self.settings
        message = (
            f"auc_drop: ROC AUC of the last {ranking.window} examples is "
            f"{ranking.recent_auc:.3f}, down from {ranking.reference_auc:.3f} over the "
            f"{ranking.reference} before them ({ranking.statistic:.1f} standard errors; "
            f"alerts at a drop of {s.drift_ranking_min_drop} and {s.drift_ranking_z} of them)"
        )
        threshold = ranking.reference_auc - s.drift_ranking_min_drop
        found = (ranking.recent_auc, threshold, ranking.window)
        return [self._alert("auc_drop", "ranking", found, ts, message)]

    def _kswin_update(self, x: Mapping[str, float | str], ts: float) -> list[Alert]:
        s = self.settings
        window = s.drift_kswin_stat_size * s.drift_kswin_every
        alerts = []
        for name, detector in self._kswin.items():
            value = x.get(name)
            if value is None or isinstance(value, str) or not math.isfinite(value):
                continue
            detector.update(value)
            if detector.drift_detected:
                p_value = float(detector.p_value)
                message = (
                    f"kswin: {name} of about the last {window} examples differs from the "
                    f"window before (KS p-value {p_value:.2g})"
                )
                found = (p_value, s.drift_kswin_alpha, window)
                alerts.append(self._alert("kswin", f"feature:{name}", found, ts, message))
        return alerts

    def _psi_update(self, x: Mapping[str, float | str], p: float, ts: float) -> list[Alert]:
        s = self.settings
        alerts = []
        for signal, (name, tracker) in self._psi.items():
            psi = tracker.update(p if name is None else x.get(name))
            if psi is not None and psi > s.drift_psi_threshold:
                tracker.rebase()
                message = (
                    f"psi: {signal} of the last {s.drift_psi_window} examples has PSI {psi:.3f} "
                    "against its reference window; the next window is the new reference"
                )
                found = (psi, s.drift_psi_threshold, s.drift_psi_window)
                alerts.append(self._alert("psi", signal, found, ts, message))
        return alerts

    def _alert(
        self,
        detector: str,
        signal: str,
        found: tuple[float, float, int],
        ts: float,
        message: str,
        test: tuple[float, float] | None = None,
    ) -> Alert:
        value, threshold, window = found
        statistic, line = test if test is not None else (None, None)
        return Alert.make(
            n=self.n,
            ts=ts,
            model=self.model,
            variant=self.variant,
            detector=detector,
            signal=signal,
            value=value,
            threshold=threshold,
            window=window,
            message=message,
            test_statistic=statistic,
            test_threshold=line,
        )


def _explained(cut: MixCut, what: str) -> tuple[float, str]:
    """The newer level of `what` the label rate alone explains, and the figures that say so."""
    return cut.expected, (
        f"positive rate {cut.label_after:.4f}, was {cut.label_before:.4f}: at the older "
        f"{what} on positives and on negatives the newer {what} would be {cut.expected:.4f}"
    )


def _adwin_test(
    width: float, total: float, spread: float, x: float, adwin: drift.ADWIN
) -> tuple[float, float]:
    """The difference of the means of the part River's ADWIN dropped and the part it kept
    when it cut, and ADWIN's bound for those sizes (Bifet and Gavaldà; River's form: the
    window's variance, confidence delta / ln(width)), from its state around the update."""
    n_all = width + 1
    kept = adwin.width
    dropped = max(n_all - kept, 1.0)
    kept_mean = adwin.estimation
    dropped_mean = (total + x - kept_mean * kept) / dropped
    variance = spread / max(width, 1.0)
    confidence = math.log(2.0 * math.log(max(n_all, 3.0)) / adwin.delta)
    m = 1.0 / max(kept, 1.0) + 1.0 / dropped
    bound = math.sqrt(2.0 * m * variance * confidence) + 2.0 / 3.0 * confidence * m
    return kept_mean - dropped_mean, bound
