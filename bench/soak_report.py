"""What the soak benchmark prints at the end of a run."""

import argparse
import os
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from bench.load_client import OK, Outcome
from bench.soak_accounting import STALE_ALERT_S, WindowStats, window_stats
from bench.soak_audit import Audit, SideTopic
from bench.soak_faults import Fault
from bench.soak_procs import Exit
from bench.soak_watch import VERSION_EVERY_S, RedisWatch


def _side(topic: SideTopic) -> str:
    extra = topic.copies - topic.sources
    return f"topic holds {topic.copies:,} copies of {topic.sources:,} records" + (
        f" ({extra:,} written twice by a replay: the side topics are at-least-once)"
        if extra
        else ""
    )


def _check(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def print_events(audit: Audit) -> None:
    produced = audit.produced
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(audit.produced_types.items()))
    print("\nevents")
    if produced is None:
        print("  the simulator FAILED (see .stack/soak/logs/simulator.log); produced = in Kafka")
    print(f"  produced, acknowledged by Kafka    {audit.produced_total:>12,}  ({kinds})")
    print(f"  in Kafka (end offsets)             {audit.in_kafka:>12,}")
    print(f"  taken in (committed offsets)       {audit.committed_offsets:>12,}")
    print(f"  learned (applied to the models)    {audit.learned:>12,}")
    print(
        f"    examples learned                 {audit.counts.get('learned', 0):>12,}  "
        f"(labels final; {audit.joins.get('pending', 0):,} impressions still await theirs)"
    )
    print(f"  dead-lettered                      {audit.dead_lettered:>12,}  ({_side(audit.dlq)})")
    print(
        f"  quarantined                        {audit.quarantined:>12,}  "
        f"({_side(audit.quarantine)})"
    )
    print(f"  duplicates skipped                 {audit.counts.get('duplicate_event', 0):>12,}")
    print(
        f"  LOST                               {audit.lost:>12,}  "
        f"(event ids: {audit.ids.lost:,} of {audit.ids.expected:,} never taken in; "
        f"malformed records not dead-lettered: {audit.lost - audit.ids.lost:,})"
    )
    print(
        f"  LEARNED TWICE                      {audit.twice:>12,}  "
        f"(event ids taken in more than once: {audit.ids.twice:,}; "
        f"dead-lettered more than once: {audit.twice - audit.ids.twice:,})"
    )
    counts_ok = all(r.lost == 0 and r.twice == 0 for r in audit.rows)
    print("  checks")
    print(f"    every counter of the learner = what was produced, by type: {_check(counts_ok)}")
    for row in audit.rows:
        if row.lost or row.twice:
            print(f"      {row.name}: produced {row.expected:,}, counted {row.counted:,}")
    consumed = audit.taken_in + audit.dead_lettered
    print(
        f"    counters ({consumed:,}) = committed offsets = Kafka's end offsets: "
        f"{_check(consumed == audit.committed_offsets == audit.in_kafka)}"
    )
    print(
        f"    event ids taken in ({audit.ids.committed:,}) = counted events "
        f"({audit.taken_in - audit.counts.get('duplicate_event', 0):,}): "
        f"{_check(audit.ids.committed == audit.taken_in - audit.counts.get('duplicate_event', 0))}"
        f"; ids nobody produced: {audit.ids.unexpected}"
    )
    balance = audit.joins_balance
    print(
        f"    every impression learned once, pending or quarantined (taken in, not settled nor "
        f"pending: {balance:,}; quarantined events: {audit.quarantined:,}): "
        f"{_check(0 <= balance <= audit.quarantined)}"
    )
    spurious = audit.quarantined_uncommitted
    print(
        f"    the quarantine topic holds only what the committed state quarantined: "
        f"{_check(spurious == 0)}"
        + (
            f" ({spurious:,} records or more were quarantined by a learner whose work was "
            "fenced off: they were learned)"
            if spurious
            else ""
        )
    )
    if audit.seen_breaks:
        print(
            f"    the committed id list could not be followed {audit.seen_breaks} time(s): "
            "the id counts are not exact across those points"
        )


def print_windows(stats: Sequence[WindowStats], faults: Sequence[Fault], began: float) -> None:
    print(
        "\nper fault (each window runs from the fault to the next one; outcomes of /predict; "
        f"stale: the model behind an answer no longer the one in Redis, +-{VERSION_EVERY_S} s)"
    )
    header = (
        f"{'window':<24} {'at s':>7} {'back s':>7} {'requests':>8} {'ok':>7} {'5xx':>5} "
        f"{'timeout':>7} {'conn err':>8} {'failover':>8} {'degraded':>8} {'p99 ms':>7} "
        f"{'max stale s':>11} {'>' + str(STALE_ALERT_S) + ' s':>6} {'no new version s':>16}"
    )
    print(header)
    start = began
    backs: dict[str, Fault] = {f.name: f for f in faults}
    for w in stats:
        fault = backs.get(w.name)
        took = fault.took_s if fault is not None else None
        back = f"{took:7.1f}" if took is not None else f"{'-' if fault is None else 'never':>7}"
        print(
            f"{w.name:<24} {w.start - start:7.1f} {back} {w.requests:>8,} "
            f"{w.outcomes[OK]:>7,} {w.outcomes['5xx']:>5,} {w.outcomes['timeout']:>7,} "
            f"{w.outcomes['error']:>8,} {w.failovers:>8,} {w.degraded:>8,} {w.p99_ms:>7.0f} "
            f"{w.max_stale_s:>11.2f} {w.stale_answers:>6,} {w.longest_version_gap_s:>16.1f}"
        )
    for fault in faults:
        stopped = (
            f"down {fault.stopped - fault.at:.1f} s after the fault, " if fault.stopped else ""
        )
        print(f"  {fault.name}: {fault.detail}; {stopped}back after {fault.took_s or 0:.1f} s")


def print_report(
    *,
    args: argparse.Namespace,
    audit: Audit,
    faults: list[Fault],
    watch: RedisWatch,
    outcomes: list[Outcome],
    load_summary: list[float] | None,
    windows_from: tuple[float, float],
    exits: list[Exit],
    timing: dict[str, Any],
) -> None:
    began, ended = timing["started"], timing["ended"]
    elapsed = ended - began
    load_start, load_end = windows_from
    print(
        f"\nsoak of {elapsed:.0f} s (--duration {args.duration:.0f}); "
        f"faults at {', '.join(f'{f.at - began:.0f}' for f in faults)} s; "
        f"machine busy {timing['busy']:.0%} on average"
    )
    produced = audit.produced
    sim_rate = float(produced["rate"]) if produced is not None else float("nan")
    answered = sum(o.outcome == OK for o in outcomes)
    load_s = load_end - args.timeout - load_start
    print(f"{'':24} {'target':>10} {'achieved':>10}")
    print(f"{'events/s (simulator)':24} {args.events_per_s:>10,.0f} {sim_rate:>10,.0f}")
    print(
        f"{'/predict/s sent':24} {args.predict_per_s:>10,.0f} {len(outcomes) / load_s:>10,.1f}"
        f"   answered 2xx: {answered / load_s:,.1f}/s; {args.candidates} candidates each; "
        f"p50 {load_summary[1] if load_summary else 0:.0f} ms, "
        f"p99 {load_summary[2] if load_summary else 0:.0f} ms"
    )
    if load_summary and load_summary[4]:
        print(
            f"{'':24} the client fell behind and skipped {load_summary[4]:,.0f} requests "
            "(its machine too busy)"
        )
    cpu: dict[str, float] = timing["cpu"]
    ours = sum(cpu.values())
    parts = ", ".join(f"{role} {used / elapsed:.2f}" for role, used in sorted(cpu.items()))
    print(
        f"CPU in cores, on average over the run: {parts}; everything else on the machine "
        f"{max(0.0, timing['machine_cpu'] - ours) / elapsed:.2f} (of {os.cpu_count()})"
    )
    caught = timing["caught_up"]
    print(
        "learner: "
        + (
            f"caught up {caught - ended:.0f} s after the simulator stopped"
            if caught is not None
            else "did NOT catch up within --catch-up-timeout"
        )
    )
    print(
        f"leases granted for the shard: {timing['leases']} (each time a learner became "
        "active: a start, a takeover, a lease reclaimed after it expired)"
    )
    print_events(audit)
    bounds = [load_start, *(f.at for f in faults), load_end]
    names = ["before the faults", *(f.name for f in faults)]
    windows = [(n, a, b) for n, (a, b) in zip(names, pairwise(bounds), strict=True)]
    for fault in faults:
        if fault.back is None and fault.name.startswith("active learner"):
            # Back when the standby published its first version.
            after = [t for t in watch.timeline.times if t > fault.at]
            fault.back = after[0] if after else None
    stats = window_stats(windows, outcomes, watch.timeline)
    print_windows(stats, faults, began)
    worst = max(stats, key=lambda w: w.max_stale_s)
    print(
        f"\nlongest time served from a stale model: {worst.max_stale_s:.2f} s ({worst.name}); "
        f"versions published: {len(watch.timeline.versions):,}"
    )
    if watch.outages:
        down = ", ".join(
            f"{o.start - began:.1f}-{(o.end or ended) - began:.1f} s" for o in watch.outages
        )
        print(f"Redis did not answer the benchmark at: {down}")
    print("process exits:" if exits else "process exits: none")
    for e in exits:
        cause = "killed by the benchmark" if e.caused else "EXITED BY ITSELF"
        print(f"  {e.at - began:7.1f} s  {e.name} (pid {e.pid}) code {e.code}: {cause}")
