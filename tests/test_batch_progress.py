"""The counting job's per-batch progress lines, and the bench's reading of them (pure: no Spark session)."""

from __future__ import annotations

from bench.breakdown import medians
from bench.phases import after_warm_up
from realtime_voting.counting.batch_progress import Batch, breakdown, line, parse

# A StreamingQueryProgress as Spark 4.2 reports one of the tallies query's micro-batches (its JSON, trimmed).
PROGRESS = {
    "name": "e1-tallies",
    "batchId": 12,
    "numInputRows": 1000,
    "processedRowsPerSecond": 950.4,
    "durationMs": {"addBatch": 900, "commitOffsets": 40, "getBatch": 0, "latestOffset": 3, "queryPlanning": 25,
                   "triggerExecution": 1052, "walCommit": 60},
    "stateOperators": [
        {"operatorName": "dedupe", "numRowsUpdated": 1000, "allUpdatesTimeMs": 120, "commitTimeMs": 210,
         "customMetrics": {"rocksdbCommitFlushLatency": 30, "rocksdbLoadLatencyMs": 5, "rocksdbGetCount": 1000}},
        {"operatorName": "stateStoreSave", "numRowsUpdated": 40, "allUpdatesTimeMs": 15, "commitTimeMs": 95,
         "customMetrics": {}},
    ],
}


def test_a_batch_breaks_down_into_the_triggers_phases_and_each_state_operators_times():
    parts = breakdown(PROGRESS)
    assert parts == {
        "latestOffset": 3, "queryPlanning": 25, "getBatch": 0, "addBatch": 900, "walCommit": 60,
        "commitOffsets": 40,
        "dedupe.allUpdatesTimeMs": 120, "dedupe.commitTimeMs": 210, "dedupe.rocksdbLoadLatencyMs": 5,
        "dedupe.rocksdbCommitFlushLatency": 30,
        "stateStoreSave.allUpdatesTimeMs": 15, "stateStoreSave.commitTimeMs": 95,
    }
    assert "dedupe.rocksdbGetCount" not in parts, "a count is not a time"


def test_the_logged_line_reads_back_as_the_same_batch_after_the_loggers_prefix():
    logged = "08:03:52 INFO    realtime_voting.counting.job: " + line(PROGRESS)
    assert parse(logged) == Batch("e1-tallies", 12, 1000, 1052, breakdown(PROGRESS))


def test_a_line_without_a_breakdown_still_reads_and_other_lines_do_not():
    assert parse("x: e1-dead_letters batch 3: 7 rows, 1 rows/s, 5000 ms") == Batch("e1-dead_letters", 3, 7, 5000, {})
    assert parse("08:03:52 INFO    realtime_voting.counting.job: query e1-tallies started (id 1)") is None


def test_a_rate_spark_reports_as_not_a_number_is_logged_as_zero():
    logged = line(PROGRESS | {"processedRowsPerSecond": float("nan")})
    assert " 0 rows/s, " in logged and parse(logged) is not None


def test_the_medians_are_per_part_with_a_missing_part_as_zero():
    batches = [Batch("q", 1, 10, 100, {"addBatch": 80, "walCommit": 5}), Batch("q", 2, 30, 300, {"addBatch": 200}),
               Batch("q", 3, 20, 200, {"addBatch": 150, "walCommit": 7})]
    assert medians(batches) == {"rows": 20, "triggerExecution": 200, "addBatch": 150, "walCommit": 5}
    assert medians([]) == {}


def test_the_warm_up_is_the_batches_before_its_rows_were_read():
    batches = [Batch("q", number, rows, 1, {}) for number, rows in enumerate([1, 500, 600, 900, 1000])]
    assert [batch.batch_id for batch in after_warm_up(batches, 1100)] == [3, 4]
    assert after_warm_up(batches, 10_000) == []
