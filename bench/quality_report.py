"""bench/quality.py's rows and tables: a model's held-out quality beside what it reports."""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.uncertainty import HeldOutErrors, delong_error, exact_auc, held_out_errors
from headrace.sim.store_world import ShopRequest
from tests.heldout import HeldOut, Quality, quality

Score = Callable[[ShopRequest], np.ndarray]


@dataclass(frozen=True)
class Window:
    """The rolling window the learner reports, set against the hidden probabilities."""

    expected: float
    """Expected ROC AUC of the predictions served for the window's examples."""
    hidden: float
    """The hidden model's own expected ROC AUC on the same examples."""
    agree: float
    """Share of the window's labels equal to the simulator's outcomes of the impressions
    it is matched with: 1.0 (or within a few late purchases of it) when the match is right."""
    positives: int
    """Purchases among the window's labels: what its AUC's precision rests on."""
    draw_se: float
    """Standard deviation of the window's AUC over labels drawn again from the hidden
    probabilities, for the same served predictions: the rolling AUC's own noise."""
    delong_se: float
    """DeLong's estimate of the same from the window's labels and scores alone."""
    hidden_rolling: float
    """The hidden model's own ROC AUC on the window's labels: what the dashboard would
    show for the best possible model."""


@dataclass
class Row:
    name: str
    final: Quality
    reported: float | None = None
    reported_rolling: float | None = None
    curve: list[tuple[int, Quality]] = field(default_factory=list)
    learned: int = 0
    window: Window | None = None
    errors: HeldOutErrors | None = None
    scored: tuple[np.ndarray, np.ndarray] | None = None
    """The rolling window's labels and served predictions, oldest first."""


def recorded(score: Score) -> tuple[Score, list[np.ndarray]]:
    """`score`, keeping what it returns in order: the held-out scores for the errors."""
    kept: list[np.ndarray] = []

    def keep(request: ShopRequest) -> np.ndarray:
        kept.append(score(request))
        return kept[-1]

    return keep, kept


def scored_row(name: str, data: HeldOut, score: Score) -> "Row":
    """A row of `score`'s held-out quality, with its bootstrap standard errors."""
    keep, kept = recorded(score)
    row = Row(name, quality(data, keep))
    row.errors = held_out_errors(data.p, np.concatenate(kept), len(data.requests[0].candidates))
    return row


def _moved(q: Quality) -> bool:
    return q.auc > 0.5


def _recovered(target: float, q: Quality) -> bool:
    return q.ratio >= target


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def events_until(
    curve: list[tuple[int, Quality]], drift_at: int, test: Callable[[Quality], bool]
) -> str:
    for n, q in curve:
        if n > drift_at and test(q):
            return f"{n - drift_at:,}"
    return "never"


def print_errors(rows: list[Row], requests: int) -> None:
    """The standard errors of the first table's figures: is a gap noise?"""
    resamples = next((r.errors.resamples for r in rows if r.errors is not None), 0)
    print()
    print(
        f"standard errors: held-out over {requests:,} requests (bootstrap of whole requests, "
        f"{resamples} resamples; the learner's own variation not included); rolling: DeLong's "
        "from the window's labels and scores, and [the spread of its AUC over labels drawn "
        "again from the hidden probabilities]; the gap's is both together"
    )
    print(
        "| model, method | held-out AUC | / hidden | calibration (95 % interval) "
        "| rolling (window's purchases) | rolling - held-out |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        e, w, q = row.errors, row.window, row.final
        if e is None:
            continue
        low, high = q.calibration - 1.96 * e.calibration, q.calibration + 1.96 * e.calibration
        rolling = gap = "-"
        if w is not None and row.reported_rolling is not None:
            rolling = (
                f"{row.reported_rolling:.3f} ± {w.delong_se:.3f} [{w.draw_se:.3f}] "
                f"({w.positives:,})"
            )
            gap_se = math.hypot(w.delong_se, e.auc)
            gap = f"{row.reported_rolling - q.auc:+.3f} ± {gap_se:.3f}"
        print(
            f"| {row.name} | {q.auc:.3f} ± {e.auc:.3f} | {q.ratio:.3f} ± {e.ratio:.3f} | "
            f"{q.calibration:.3f} ± {e.calibration:.3f} ({low:.2f} to {high:.2f}) | "
            f"{rolling} | {gap} |"
        )


def print_spans(rows: list[Row], spans: list[int]) -> None:
    """The exact AUC over the last `span` examples of the window, for shorter and longer
    windows than the shipped one (HEADRACE_METRICS_WINDOW sets how many the window keeps):
    a longer one draws less noise and scores older predictions."""
    print()
    print(
        "the rolling AUC over the last n examples of the window (DeLong's standard error; "
        "purchases): its gap to the held-out AUC"
    )
    print("| model, method | " + " | ".join(f"{n:,}" for n in spans) + " |")
    print("|---" * (len(spans) + 1) + "|")
    for row in rows:
        if row.scored is None:
            continue
        ys, ps = row.scored
        cells = []
        for n in spans:
            if n > len(ys):
                cells.append("-")
                continue
            y, p = ys[-n:], ps[-n:]
            auc = exact_auc(y, p)
            cells.append(
                f"{auc - row.final.auc:+.3f} ± {delong_error(y, p):.3f} ({int(y.sum()):,})"
            )
        print(f"| {row.name} | " + " | ".join(cells) + " |")


def print_report(rows: list[Row], requests: int, spans: list[int], drift_at: int | None) -> None:
    """Every table of bench/quality.py for `rows`, the first of which is the learner's."""
    hidden = rows[0].final.hidden_auc
    print()
    print(f"hidden model's held-out AUC: {hidden:.3f}")
    header = (
        "| model, method | held-out AUC | / hidden | calibration | reported AUC (cum / rolling)"
        " | rolling - held-out | examples |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        gap = None if row.reported_rolling is None else row.reported_rolling - row.final.auc
        print(
            f"| {row.name} | {row.final.auc:.3f} | {row.final.ratio:.3f} | "
            f"{row.final.calibration:.2f} | {fmt(row.reported)} / {fmt(row.reported_rolling)} | "
            f"{fmt(gap)} | {row.learned:,} |"
        )
    print_errors(rows, requests)
    print_spans(rows, spans)
    print()
    print(
        "why the rolling AUC differs from the held-out one: draws = rolling - the same "
        "window's expected AUC; scored = that expected AUC - held-out (predictions served up "
        "to a window earlier, on pages at every position, against the final model at the "
        "top), split into ranking (the window's ratio to the hidden model's AUC against the "
        "held-out ratio, times the hidden AUC on the window) and traffic (the hidden model's "
        "own AUC on the window against on the held-out requests, times the held-out ratio); "
        "the last column is the same gap for the hidden model itself (its rolling AUC on the "
        "window's labels against its held-out AUC): what the best possible model would show"
    )
    print(
        "| model, method | rolling | window expected (/ hidden on it) | held-out (/ hidden) "
        "| draws | scored | of it: ranking | of it: traffic | labels matched "
        "| hidden model: rolling - held-out |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        w = row.window
        if w is None or row.reported_rolling is None:
            continue
        print(
            f"| {row.name} | {row.reported_rolling:.3f} | {w.expected:.3f} "
            f"({w.expected / w.hidden:.3f}) | {row.final.auc:.3f} ({row.final.ratio:.3f}) | "
            f"{row.reported_rolling - w.expected:+.3f} | {w.expected - row.final.auc:+.3f} | "
            f"{(w.expected / w.hidden - row.final.ratio) * w.hidden:+.3f} | "
            f"{row.final.ratio * (w.hidden - row.final.hidden_auc):+.3f} | {w.agree:.1%} | "
            f"{w.hidden_rolling - row.final.hidden_auc:+.3f} |"
        )
    print()
    print("held-out ratio to the hidden model's AUC (calibration), by records learned:")
    for row in rows:
        if row.curve:
            points = ", ".join(
                f"{n // 1000}k {q.ratio:.3f} ({q.calibration:.2f})" for n, q in row.curve
            )
            print(f"  {row.name}: {points}")
    if drift_at is not None:
        print()
        print("| model, method | moves (AUC > 0.5 on the new regime) | recovers (90 % of ratio) |")
        print("|---|---|---|")
        for row in rows:
            if not row.curve:
                continue
            pre = [q.ratio for n, q in row.curve if n <= drift_at]
            target = 0.9 * pre[-1] if pre else 0.0
            moves = events_until(row.curve, drift_at, _moved)
            recovers = events_until(row.curve, drift_at, functools.partial(_recovered, target))
            print(f"| {row.name} | {moves} | {recovers} |")
