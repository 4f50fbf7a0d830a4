"""The counting job's progress: one log line per micro-batch, with where its time went, and reading it back.

A line reads ``tallies batch 12: 1000 rows, 950 rows/s, 1052 ms; addBatch=900 latestOffset=3 ...``: the query,
its batch, input rows, rows per second and the whole trigger's milliseconds, then the parts of
``StreamingQueryProgress`` that say where a batch's fixed cost goes (``breakdown``). The bench reads these lines
back with ``parse`` (``bench.phases``), so that its output shows the same breakdown to the next person.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass

from pyspark.sql.streaming import StreamingQueryListener

# The counting job's logger: its progress lines read as the job's own, as they did before they moved here.
logger = logging.getLogger("realtime_voting.counting.job")

# The trigger's phases (``durationMs``), in the order a micro-batch runs them.
DURATION_PARTS = ("latestOffset", "queryPlanning", "getBatch", "addBatch", "walCommit", "commitOffsets")
# Per state operator (the dedup set, the tallies): its own times, and the RocksDB store's load and commit
# latencies, each summed over the operator's partitions.
OPERATOR_TIMES = ("allUpdatesTimeMs", "commitTimeMs")
ROCKSDB_LATENCIES = ("rocksdbLoadLatencyMs", "rocksdbCommitFlushLatency", "rocksdbCommitCompactLatency",
                     "rocksdbCommitCheckpointLatency", "rocksdbCommitFileSyncLatencyMs",
                     "rocksdbChangeLogWriterCommitLatencyMs")

LINE = re.compile(r"(?P<query>\S+) batch (?P<batch>\d+): (?P<rows>\d+) rows, [\d.]+ rows/s, (?P<ms>\d+) ms"
                  r"(?:; (?P<parts>.*))?$")
PART = re.compile(r"([\w.]+)=(\d+)")


@dataclass(frozen=True)
class Batch:
    """One micro-batch as its progress line tells it."""

    query: str
    batch_id: int
    rows: int
    millis: int
    parts: dict[str, int]


def breakdown(progress: dict) -> dict[str, int]:
    """Milliseconds by part of one ``StreamingQueryProgress`` (as its JSON): the trigger's phases, then each
    state operator's ``<operator>.<time>``. Parts a Spark version does not report are left out."""
    durations = progress.get("durationMs") or {}
    parts = {name: int(durations[name]) for name in DURATION_PARTS if name in durations}
    for operator in progress.get("stateOperators") or []:
        name = operator.get("operatorName", "state")
        metrics = {**operator, **(operator.get("customMetrics") or {})}
        parts |= {f"{name}.{metric}": int(metrics[metric]) for metric in (*OPERATOR_TIMES, *ROCKSDB_LATENCIES)
                  if metric in metrics}
    return parts


def line(progress: dict) -> str:
    """The log line of one micro-batch's progress."""
    parts = " ".join(f"{name}={millis}" for name, millis in breakdown(progress).items())
    rate = progress.get("processedRowsPerSecond") or 0.0
    return (f"{progress['name']} batch {progress['batchId']}: {progress['numInputRows']} rows, "
            f"{rate if math.isfinite(rate) else 0.0:.0f} rows/s, "
            f"{(progress.get('durationMs') or {}).get('triggerExecution', 0)} ms" + (f"; {parts}" if parts else ""))


def parse(text: str) -> Batch | None:
    """The micro-batch a log line tells of (the logger's prefix before it allowed), or None for other lines."""
    match = LINE.search(text)
    if match is None:
        return None
    return Batch(match["query"], int(match["batch"]), int(match["rows"]), int(match["ms"]),
                 {name: int(millis) for name, millis in PART.findall(match["parts"] or "")})


class ProgressLog(StreamingQueryListener):
    """One ``line`` per micro-batch that read rows; a query's start and failure."""

    def onQueryStarted(self, event) -> None:  # noqa: N802 - Spark's listener API
        logger.info("query %s started (id %s)", event.name, event.id)

    def onQueryProgress(self, event) -> None:  # noqa: N802
        progress = event.progress
        if progress.numInputRows:
            logger.info("%s", line(json.loads(progress.json)))

    def onQueryIdle(self, event) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        if event.exception:
            logger.error("query %s failed: %s", event.id, event.exception.splitlines()[0])
