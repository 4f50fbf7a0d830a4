"""What the counting job's totals must be: GROUP BYs over the votes and voters tables, and the check that every
result topic holds them."""

from __future__ import annotations

from collections import Counter

from realtime_voting.core import topics
from realtime_voting.core.schemas import Result, keep_highest
from realtime_voting.core.settings import Settings
from realtime_voting.services.db import query
from realtime_voting.services.kafka_io import read_to_end

AGE_GROUP_SQL = """
    CASE WHEN age IS NULL THEN 'unknown' WHEN age < 18 THEN 'under 18' WHEN age <= 24 THEN '18-24'
         WHEN age <= 34 THEN '25-34' WHEN age <= 44 THEN '35-44' WHEN age <= 54 THEN '45-54'
         WHEN age <= 64 THEN '55-64' ELSE '65+' END
"""
EXPECTED_SQL = {
    topics.VOTES_PER_CANDIDATE: "SELECT candidate_id, count(*) FROM votes GROUP BY 1",
    topics.VOTES_PER_PARTY: "SELECT c.party_affiliation, count(*) FROM votes JOIN candidates c "
                            "USING (candidate_id) GROUP BY 1",
    topics.TURNOUT_BY_LOCATION: "SELECT v.address_state, count(*) FROM votes JOIN voters v "
                                "USING (voter_id) GROUP BY 1",
    topics.TURNOUT_BY_GENDER: "SELECT v.gender, count(*) FROM votes JOIN voters v USING (voter_id) GROUP BY 1",
    topics.TURNOUT_BY_AGE_GROUP: f"""
        SELECT {AGE_GROUP_SQL}, count(*) FROM (
            SELECT extract(year FROM age((votes.voting_time AT TIME ZONE 'UTC')::date, v.date_of_birth))::int AS age
            FROM votes JOIN voters v USING (voter_id)) AS ages
        GROUP BY 1""",  # noqa: S608 - a constant of this test, no input
}


def latest(election: Settings, topic: str) -> dict[str, Result]:
    """The current result per key of a compacted result topic, as every reader folds them (the highest total)."""
    results: dict[str, Result] = {}
    for message in read_to_end(election, election.topic(topic)):
        keep_highest(results, message.key().decode(), Result.from_message(message.value()))
    return results


def assert_totals_equal_the_tables(election: Settings) -> None:
    for topic, statement in EXPECTED_SQL.items():
        expected = dict(query(election, statement))
        got = {key: result.total_votes for key, result in latest(election, topic).items()}
        assert got == expected, topic
    per_minute = Counter()
    for result in latest(election, topics.VOTES_PER_MINUTE).values():
        per_minute[result.candidate_id] += result.total_votes
    assert per_minute == Counter(dict(query(election, EXPECTED_SQL[topics.VOTES_PER_CANDIDATE])))
