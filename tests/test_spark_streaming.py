"""spark_streaming.py against the real broker: its totals equal GROUP BYs over the votes and voters tables,
whatever duplicates, malformed messages and SIGKILLs come its way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from confluent_kafka import Producer

from realtime_voting import kafka_io, topics
from realtime_voting.settings import REPO_ROOT, Settings
from tests.conftest import query, read_topic, run_script
from tests.test_seeding_and_voting import seed, vote

AGE_GROUP_SQL = """
    CASE WHEN age IS NULL THEN 'unknown' WHEN age < 18 THEN 'under 18' WHEN age <= 24 THEN '18-24'
         WHEN age <= 34 THEN '25-34' WHEN age <= 44 THEN '35-44' WHEN age <= 54 THEN '45-54'
         WHEN age <= 64 THEN '55-64' ELSE '65+' END
"""
EXPECTED_SQL = {
    "aggregated_votes_per_candidate": "SELECT candidate_id, count(*) FROM votes GROUP BY 1",
    "aggregated_votes_per_party": "SELECT c.party_affiliation, count(*) FROM votes JOIN candidates c "
                                  "USING (candidate_id) GROUP BY 1",
    "aggregated_turnout_by_location": "SELECT v.address_state, count(*) FROM votes JOIN voters v "
                                      "USING (voter_id) GROUP BY 1",
    "aggregated_turnout_by_gender": "SELECT v.gender, count(*) FROM votes JOIN voters v USING (voter_id) GROUP BY 1",
    "aggregated_turnout_by_age_group": f"""
        SELECT {AGE_GROUP_SQL}, count(*) FROM (
            SELECT extract(year FROM age((votes.voting_time AT TIME ZONE 'UTC')::date, v.date_of_birth))::int AS age
            FROM votes JOIN voters v USING (voter_id)) AS ages
        GROUP BY 1""",
}


def count(election: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_script(election, "spark_streaming.py", "--available-now", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def latest(election: Settings, topic: str) -> dict[str, dict]:
    """The current result per key of a compacted result topic: the latest message of each key."""
    messages = read_topic(election, election.topic(topic))
    return {message.key().decode(): json.loads(message.value()) for message in messages}


def assert_totals_equal_the_tables(election: Settings) -> None:
    for topic, statement in EXPECTED_SQL.items():
        expected = dict(query(election, statement))
        got = {key: value["total_votes"] for key, value in latest(election, topic).items()}
        assert got == expected, topic
    per_minute = Counter()
    for value in latest(election, "aggregated_votes_per_minute").values():
        per_minute[value["candidate_id"]] += value["total_votes"]
    assert per_minute == Counter(dict(query(election, EXPECTED_SQL["aggregated_votes_per_candidate"])))


def test_totals_equal_the_tables_and_ignore_duplicates_and_bad_messages(election):
    seed(election, "--voters", "3000")
    vote(election)
    votes_topic = election.topic(topics.VOTES)
    copies = [(message.key(), message.value()) for message in read_topic(election, votes_topic)[:200]]
    good_vote = json.loads(copies[0][1])
    bad_messages = [
        (b"bad-1", b"not json at all"),
        (b"bad-2", json.dumps({**good_vote, "voter_id": "stranger", "candidate_id": "nobody"}).encode()),
        (b"bad-3", json.dumps({**good_vote, "voter_id": "stranger-2", "voting_time": "soon"}).encode()),
        (b"bad-4", json.dumps({key: value for key, value in good_vote.items() if key != "candidate_id"}).encode()),
    ]
    producer = Producer(kafka_io.producer_config(election))
    for key, value in copies + bad_messages:
        producer.produce(votes_topic, key=key, value=value)
    assert producer.flush(10) == 0

    count(election)
    assert_totals_equal_the_tables(election)
    assert sum(value["total_votes"] for value in latest(election, "aggregated_votes_per_candidate").values()) == 3000
    one_result = next(iter(latest(election, "aggregated_votes_per_candidate").values()))
    assert set(one_result) == {"candidate_id", "candidate_name", "party_affiliation", "photo_url", "total_votes",
                               "computed_at"}
    dead = {message.key(): dict(message.headers()) for message in read_topic(election, election.topic(
        topics.DEAD_LETTERS)) if dict(message.headers())["dlq.stage"] == b"counting"}
    assert set(dead) == {key for key, _ in bad_messages}
    assert dead[b"bad-2"]["dlq.reason"] == b"unknown candidate nobody"
    assert dead[b"bad-3"]["dlq.reason"] == b"voting_time is not a time: soon"
    assert dead[b"bad-4"]["dlq.reason"] == b"missing candidate_id"

    # The same votes again, after the job has counted them: no total moves.
    before = {topic: {k: v["total_votes"] for k, v in latest(election, topic).items()} for topic in EXPECTED_SQL}
    for key, value in copies:
        producer.produce(votes_topic, key=key, value=value)
    assert producer.flush(10) == 0
    count(election)
    after = {topic: {k: v["total_votes"] for k, v in latest(election, topic).items()} for topic in EXPECTED_SQL}
    assert after == before
    assert_totals_equal_the_tables(election)


def test_totals_are_exact_after_sigkill_mid_stream(election):
    seed(election, "--voters", "1000")
    environment = {**os.environ, **election.as_environment()}
    voting = subprocess.Popen([sys.executable, "voting.py", "--batch-size", "100"], cwd=REPO_ROOT, env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results_topic = election.topic("aggregated_votes_per_candidate")
    try:
        for kill in range(3):
            job = subprocess.Popen([sys.executable, "spark_streaming.py"], cwd=REPO_ROOT, env=environment,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            already = len(read_topic(election, results_topic))
            seed(election, "--voters", str(1000 * (kill + 2)))  # new voters, so new votes, while the job runs
            deadline = time.monotonic() + 180
            # Kill it as soon as it has written results of its own: in the middle of counting the new votes.
            while len(read_topic(election, results_topic)) <= already:
                assert job.poll() is None, "spark_streaming.py exited by itself"
                assert time.monotonic() < deadline, f"no new results within 180s before kill {kill + 1}"
                time.sleep(0.5)  # polling interval of the condition above, bounded by the deadline
            os.kill(job.pid, signal.SIGKILL)
            job.wait()
    finally:
        voting.terminate()
        voting.wait(timeout=60)
    vote(election)  # the votes of any voter still waiting
    assert query(election, "SELECT count(*) FROM votes") == [(4000,)]
    count(election)
    assert_totals_equal_the_tables(election)
