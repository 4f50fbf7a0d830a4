"""What the counting job published, read from its result topics, and what it says about the votes table.

A result is the running total of one candidate (``topics.VOTES_PER_CANDIDATE``, keyed by candidate ID), so the
newest message per key is the current total, and the whole history says when each total was reached.
"""

from __future__ import annotations

import statistics
import uuid

from confluent_kafka import Consumer

from bench import BenchFailed
from realtime_voting.core import topics
from realtime_voting.core.schemas import Result, Vote, keep_highest
from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io

READ_TIMEOUT_S = 120.0  # a result topic of a million-voter election is read to its end well within this

Shown = tuple[Result, float]  # a result, and when the broker received it (epoch seconds)


def history(election: Settings) -> list[Shown]:
    """Every per-candidate result the job published, in the order it published them."""
    return [(Result.from_message(message.value()), message.timestamp()[1] / 1000)
            for message in kafka_io.read_to_end(election, election.topic(topics.VOTES_PER_CANDIDATE),
                                                timeout_s=READ_TIMEOUT_S)]


def latest_totals(election: Settings) -> dict[str, int]:
    """Candidate ID -> the highest total the job published for them (a replay may re-send a lower one)."""
    latest: dict[str, Result] = {}
    for result, _ in history(election):
        keep_highest(latest, result.candidate_id, result)
    return {candidate_id: result.total_votes for candidate_id, result in latest.items()}


def votes_counted(election: Settings) -> int:
    return sum(latest_totals(election).values())


def votes_stored(election: Settings) -> int:
    return db.query(election, "SELECT count(*) FROM votes")[0][0]


def check_totals(election: Settings) -> None:
    """``BenchFailed`` unless the counted totals equal the votes table's, candidate by candidate."""
    expected = dict(db.query(election, "SELECT candidate_id, count(*) FROM votes GROUP BY 1"))
    counted = latest_totals(election)
    if counted != expected:
        raise BenchFailed(f"the counted totals {counted} differ from the votes table {expected}")


def publish_delays(election: Settings, measured_from: float) -> tuple[float, float]:
    """p50 and p95 in ms of the voting stage's part of the latency: from a vote's ``voting_time`` to its message's
    timestamp on ``votes_topic`` (the producer's, when the stage handed the stored vote to it), for the votes cast
    from ``measured_from`` (epoch seconds) on. The rest of ``latency_percentiles`` is the counting job's."""
    delays = []
    for message in kafka_io.read_to_end(election, election.topic(topics.VOTES), timeout_s=READ_TIMEOUT_S):
        cast_at = Vote.from_message(message.value()).voting_time.timestamp()
        if cast_at >= measured_from:
            delays.append((message.timestamp()[1] / 1000 - cast_at) * 1000)
    quantiles = statistics.quantiles(delays, n=100)
    return quantiles[49], quantiles[94]


def result_messages(election: Settings) -> int:
    """How many messages the counting job has written to the result topics: the sum of their partitions' end
    offsets (compaction has not run on them yet: their segments roll every 10 minutes, ``topics.COMPACTED``)."""
    consumer = Consumer(kafka_io.consumer_config(election, kafka_io.ADMIN, f"reader-{uuid.uuid4().hex[:8]}",
                                                 **{"enable.auto.commit": False}))
    try:
        return sum(sum((kafka_io.partition_ends(consumer, election.topic(name)) or {}).values())
                   for name in topics.AGGREGATED)
    finally:
        consumer.close()


def latency_percentiles(election: Settings, shown: list[Shown], measured_from: float) -> tuple[float, float, float]:
    """p50, p95 and p99 in ms of ``counting_latencies`` over the votes of ``election``."""
    votes = db.query(election, "SELECT candidate_id, extract(epoch FROM voting_time) FROM votes "
                               "ORDER BY candidate_id, voting_time")
    latencies = counting_latencies([(candidate_id, float(cast_at)) for candidate_id, cast_at in votes], shown,
                                   measured_from)
    quantiles = statistics.quantiles(latencies, n=100)
    return quantiles[49], quantiles[94], quantiles[98]


def counting_latencies(votes: list[tuple[str, float]], shown: list[Shown], measured_from: float) -> list[float]:
    """Per vote cast from ``measured_from`` (epoch seconds) on, the ms from its ``voting_time`` to the first result
    of its candidate that counts it. ``votes`` are (candidate ID, voting_time), by candidate then time.

    For each candidate, the k-th vote (by voting_time) is counted when a result first shows total >= k; a total sent
    again lower (a replay) counts nothing new. Linear in the votes and the results (Real-Time Mode sends a result
    per vote): both are walked once, in order.
    """
    # Per candidate, the results in the order the broker received them, each with the highest total shown so far.
    reached: dict[str, list[tuple[float, int]]] = {}
    for result, stamp in sorted(shown, key=lambda shown_at: shown_at[1]):
        steps = reached.setdefault(result.candidate_id, [])
        steps.append((stamp, max(result.total_votes, steps[-1][1] if steps else 0)))
    latencies = []
    rank: dict[str, int] = {}
    position: dict[str, int] = {}  # per candidate, the first result that may count its next vote
    for candidate_id, cast_at in votes:
        rank[candidate_id] = rank.get(candidate_id, 0) + 1
        steps = reached.get(candidate_id, [])
        index = position.get(candidate_id, 0)
        while index < len(steps) and steps[index][1] < rank[candidate_id]:
            index += 1
        position[candidate_id] = index
        if index < len(steps) and cast_at >= measured_from:
            latencies.append((steps[index][0] - cast_at) * 1000)
    return latencies
