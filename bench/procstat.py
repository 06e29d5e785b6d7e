"""CPU and memory of processes (with their descendants) and of the whole machine, from
/proc: what the benches charge to each side of a comparison."""

import resource
from pathlib import Path


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (pages they share counted in each)."""
    total = 0.0
    for member in family(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def family(pid: int) -> list[int]:
    """`pid` and its descendants (granian serves from a worker process of its own)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and its descendants, every thread included."""
    total = 0
    for member in family(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / 100


def busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / 100


def children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
