"""Where a batch of the counting job's query spends its time, as the bench prints it.

From the job's per-batch progress lines (``realtime_voting.counting.batch_progress``): the median of each part over the
micro-batches of a phase, beside the median batch's rows and whole trigger time. It is what says whether a
latency is the batches' fixed cost (planning, the state stores' load and commit, the offsets' log) or their work.
"""

from __future__ import annotations

import statistics

from realtime_voting.counting.batch_progress import Batch


def medians(batches: list[Batch]) -> dict[str, float]:
    """The median of every figure over ``batches``: ``rows``, ``triggerExecution`` and each part (0 where a
    batch does not report it)."""
    if not batches:
        return {}
    names = dict.fromkeys(name for batch in batches for name in batch.parts)
    figures = {"rows": [batch.rows for batch in batches], "triggerExecution": [batch.millis for batch in batches]}
    figures |= {name: [batch.parts.get(name, 0) for batch in batches] for name in names}
    return {name: statistics.median(values) for name, values in figures.items()}


def print_breakdown(phases: dict[str, list[Batch]]) -> None:
    """A table of ``medians`` with one column per phase."""
    columns = {phase: medians(batches) for phase, batches in phases.items()}
    names = list(dict.fromkeys(name for figures in columns.values() for name in figures))
    if not names:
        return
    counts = "  ".join(f"{len(batches):>4} batches" for batches in phases.values())
    print(f"counting batch, median ms per part ({counts})")
    print(f"{'part':<56}" + "".join(f"{phase:>18}" for phase in columns))
    for name in names:
        print(f"{name:<56}" + "".join(f"{figures.get(name, 0):>18,.0f}" for figures in columns.values()))
    print()
