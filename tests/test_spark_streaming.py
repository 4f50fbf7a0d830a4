"""spark_streaming.py against the real broker: its totals equal GROUP BYs over the votes and voters tables,
whatever duplicates, malformed messages and SIGKILLs come its way."""

from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path

import pytest
from confluent_kafka import Producer

from realtime_voting.core import topics, waiting
from realtime_voting.core.schemas import Rejection, Vote, decode, encode
from realtime_voting.core.settings import Settings
from realtime_voting.core.topics import checkpoint_root
from realtime_voting.counting.job import EARLIER_QUERIES
from realtime_voting.running import processes
from realtime_voting.services import kafka_io
from realtime_voting.services.db import query
from realtime_voting.services.kafka_io import read_to_end
from realtime_voting.web.dashboard_data import ResultsReader
from tests.support.stages import count, last_lines, seed, vote
from tests.support.tallies import EXPECTED_SQL, assert_totals_equal_the_tables, latest

pytestmark = pytest.mark.spark

def test_totals_equal_the_tables_and_ignore_duplicates_and_bad_messages(election):
    seed(election, "--voters", "3000")
    vote(election)
    votes_topic = election.topic(topics.VOTES)
    copies = [(message.key(), message.value()) for message in read_to_end(election, votes_topic)[:200]]
    good_vote = dataclasses.asdict(Vote.from_message(copies[0][1]))
    bad_messages = [
        (b"bad-1", b"not json at all"),
        (b"bad-2", encode({**good_vote, "voter_id": "stranger", "candidate_id": "nobody"})),
        (b"bad-3", encode({**good_vote, "voter_id": "stranger-2", "voting_time": "soon"})),
        (b"bad-4", encode({key: value for key, value in good_vote.items() if key != "candidate_id"})),
    ]
    producer = Producer(kafka_io.producer_config(election, kafka_io.ADMIN))
    for key, value in copies + bad_messages:
        producer.produce(votes_topic, key=key, value=value)
    assert producer.flush(10) == 0

    count(election)
    assert_totals_equal_the_tables(election)
    assert sum(result.total_votes for result in latest(election, topics.VOTES_PER_CANDIDATE).values()) == 3000
    # On the wire a result has its group's fields and its total, nothing else (no nulls for other groups' fields).
    one_result = decode(read_to_end(election, election.topic(topics.VOTES_PER_CANDIDATE))[0].value())
    assert set(one_result) == {"candidate_id", "candidate_name", "party_affiliation", "photo_url", "total_votes"}
    dead = {message.key(): Rejection.from_headers(message.headers()) for message in read_to_end(
        election, election.topic(topics.DEAD_LETTERS))}
    assert {key for key, rejection in dead.items() if rejection.stage == "counting"} == {
        key for key, _ in bad_messages}
    assert dead[b"bad-2"].reason == "unknown candidate nobody"
    assert dead[b"bad-3"].reason == "voting_time is not a time: soon"
    assert dead[b"bad-4"].reason == "missing candidate_id"

    # The same votes again, after the job has counted them: no total moves.
    before = {topic: {k: v.total_votes for k, v in latest(election, topic).items()} for topic in EXPECTED_SQL}
    for key, value in copies:
        producer.produce(votes_topic, key=key, value=value)
    assert producer.flush(10) == 0
    count(election)
    after = {topic: {k: v.total_votes for k, v in latest(election, topic).items()} for topic in EXPECTED_SQL}
    assert after == before
    assert_totals_equal_the_tables(election)


def counting_killed_once_it_has_counted(election: Settings, kill: int, log: Path) -> None:
    """Start spark_streaming.py, register new voters (so new votes) while it runs, and SIGKILL it as soon as it
    has written results of its own: in the middle of counting the new votes."""
    results_topic = election.topic(topics.VOTES_PER_CANDIDATE)
    with processes.running(election, "spark_streaming.py", log=log) as job:
        already = len(read_to_end(election, results_topic))
        seed(election, "--voters", str(1000 * (kill + 2)))

        def new_results() -> bool:
            assert job.poll() is None, f"spark_streaming.py exited by itself\n{last_lines(log)}"
            return len(read_to_end(election, results_topic)) > already

        waiting.until(new_results, timeout_s=180, what=f"new results before kill {kill + 1}", every_s=0.5,
                      explain=lambda: last_lines(log))
        processes.stop("spark_streaming.py", job, how=signal.SIGKILL)


def test_totals_are_exact_after_sigkill_mid_stream(election, tmp_path):
    seed(election, "--voters", "1000")
    with processes.running(election, "voting.py", "--batch-size", "100", log=tmp_path / "voting.log"):
        for kill in range(3):
            counting_killed_once_it_has_counted(election, kill, tmp_path / "counting.log")
    vote(election)  # the votes of any voter still waiting
    assert query(election, "SELECT count(*) FROM votes") == [(4000,)]
    count(election)
    assert_totals_equal_the_tables(election)


class TotalsWatcher:
    """The dashboard's reader of the results, sampled every 0.1 s by a thread of its own: every total a person
    watching the dashboard could have seen, in order, per (topic, key)."""

    def __init__(self, election: Settings) -> None:
        self.reader = ResultsReader(election)
        self.seen: dict[tuple[str, str], list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for topic, rows in self.reader.snapshot().by_topic.items():
                for key, result in rows.items():
                    totals = self.seen.setdefault((topic, key), [])
                    if not totals or totals[-1] != result.total_votes:
                        totals.append(result.total_votes)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.reader.close()

    def falls(self) -> dict[tuple[str, str], list[int]]:
        return {group: totals for group, totals in self.seen.items() if totals != sorted(totals)}


def test_no_reader_sees_a_total_fall_when_the_job_is_killed_twice_in_quick_succession(election, tmp_path):
    """Votes keep coming while the counting job (the default mode) is SIGKILLed once it has counted, started
    again and SIGKILLed again at once, while it replays: the dashboard's reader never shows a total lower than one
    it showed, the totals end exact, and bad messages among the votes end as dead letters with their reasons."""
    seed(election, "--voters", "4000")
    bad_messages = {b"bad-json": b"{not json", b"bad-candidate": encode(
        {"voter_id": "stranger", "candidate_id": "nobody", "voting_time": "2026-12-07T12:00:00+00:00"})}
    producer = Producer(kafka_io.producer_config(election, kafka_io.ADMIN))
    for key, value in bad_messages.items():
        producer.produce(election.topic(topics.VOTES), key=key, value=value)
    assert producer.flush(10) == 0
    log = tmp_path / "counting.log"
    watcher = TotalsWatcher(election)
    try:
        with processes.running(election, "voting.py", "--batch-size", "50", "--rate", "400",
                               log=tmp_path / "voting.log") as voting:
            counting_killed_once_it_has_counted(election, 0, log)
            with processes.running(election, "spark_streaming.py", log=log) as again:
                # Killed as soon as its query has started again: in the middle of its replay.
                waiting.until(lambda: log.read_text().count("counting votes for") >= 2, timeout_s=120,
                              what="the counting job's second start", explain=lambda: last_lines(log))
                processes.stop("spark_streaming.py", again, how=signal.SIGKILL)
            with processes.running(election, "spark_streaming.py", log=log):
                processes.stop("voting.py", voting)
                vote(election)  # the votes of every voter still waiting
                stored = query(election, "SELECT count(*) FROM votes")[0][0]
                waiting.until(lambda: watcher.reader.snapshot().votes_counted == stored, timeout_s=180,
                              what=f"the dashboard's reader showing all {stored} votes",
                              explain=lambda: last_lines(log))
    finally:
        watcher.close()
    assert watcher.seen, "the reader saw no results"
    assert watcher.falls() == {}
    assert_totals_equal_the_tables(election)
    reasons = {message.key(): Rejection.from_headers(message.headers()).reason  # a replay may send one twice
               for message in read_to_end(election, election.topic(topics.DEAD_LETTERS))}
    assert reasons == {b"bad-json": "not valid JSON", b"bad-candidate": "unknown candidate nobody"}


def test_an_earlier_versions_checkpoint_is_refused_and_rebuilt_by_the_command_it_names(election):
    """The job before #23 checkpointed two queries, ``tallies`` and ``dead_letters``, in format v1, which this one
    cannot carry on from: it refuses them, naming ``--rebuild-checkpoint``, which counts everything again."""
    seed(election, "--voters", "500")
    vote(election)
    root = Path(checkpoint_root(election))
    for name in EARLIER_QUERIES:  # the earlier job's layout: a folder per query, with its offsets log
        (root / name / "offsets").mkdir(parents=True)
        (root / name / "offsets" / "0").write_text("v1\n")
    refused = processes.run(election, "spark_streaming.py", "--available-now")
    assert refused.returncode == 2
    assert "--rebuild-checkpoint" in refused.stderr and "earlier version" in refused.stderr
    assert latest(election, topics.VOTES_PER_CANDIDATE) == {}  # nothing counted on the old checkpoint
    count(election, "--rebuild-checkpoint")
    assert not any((root / name).exists() for name in EARLIER_QUERIES)
    assert_totals_equal_the_tables(election)
