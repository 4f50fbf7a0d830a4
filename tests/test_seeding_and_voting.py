"""main.py and voting.py against the real broker and PostgreSQL: every registered voter votes exactly once."""

from __future__ import annotations

import signal
from collections import Counter
from dataclasses import replace
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import ConfigResource
from psycopg2 import sql

from realtime_voting.core import topics, waiting
from realtime_voting.core.schemas import Rejection, Vote, encode
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.services import db, kafka_io
from realtime_voting.services.db import query
from realtime_voting.services.kafka_io import read_to_end
from realtime_voting.voting.stage import stays_home
from tests.support.randomuser import RECORDED
from tests.support.stages import last_lines, seed, succeeded, vote


def votes_on_topic(election: Settings) -> dict[str, set[str]]:
    """Each voter on votes_topic -> the candidates their messages name (one, if all is well)."""
    candidates_of: dict[str, set[str]] = {}
    for message in read_to_end(election, election.topic(topics.VOTES)):
        cast = Vote.from_message(message.value())
        assert message.key().decode() == cast.voter_id
        candidates_of.setdefault(cast.voter_id, set()).add(cast.candidate_id)
    return candidates_of


def assert_every_voter_voted_exactly_once(election: Settings, voters: int) -> None:
    table = dict(query(election, "SELECT voter_id, candidate_id FROM votes"))
    assert len(table) == voters
    assert query(election, "SELECT count(*) FROM voters v LEFT JOIN votes USING (voter_id) "
                           "WHERE votes.voter_id IS NULL") == [(0,)]
    on_topic = votes_on_topic(election)
    assert set(on_topic) == set(table)
    different = {voter: seen for voter, seen in on_topic.items() if seen != {table[voter]}}
    assert not different, f"{len(different)} voters have another candidate on votes_topic than in the table"
    assert Counter(table.values()) == Counter(next(iter(seen)) for seen in on_topic.values())


def test_seeding_creates_the_tables_topics_candidates_and_voters(election):
    result = seed(election, "--voters", "250", "--candidates", "4")
    assert "offline generator" in result.stdout
    assert query(election, "SELECT count(*) FROM voters") == [(250,)]
    parties = query(election, "SELECT party_affiliation, count(*) FROM candidates GROUP BY 1 ORDER BY 1")
    assert parties == [("Management Party", 2), ("Savior Party", 1), ("Tech Republic Party", 1)]
    existing = kafka_io.admin_client(election, kafka_io.ADMIN).list_topics(timeout=10).topics
    assert set(topics.all_topics(election)) <= set(existing)
    assert len(existing[election.topic(topics.VOTES)].partitions) == election.kafka_topic_partitions
    published = read_to_end(election, election.topic(topics.VOTERS))
    assert sorted(message.key().decode() for message in published) == sorted(
        row[0] for row in query(election, "SELECT voter_id FROM voters"))


def cleanup_policies(election: Settings) -> dict[str, str] | None:
    """The cleanup.policy of each result topic, or None while the broker does not know them all yet (its metadata
    may trail the controller's for a moment after main.py created them)."""
    admin = kafka_io.admin_client(election, kafka_io.ADMIN)
    resources = [ConfigResource("topic", election.topic(name)) for name in topics.AGGREGATED]
    try:
        return {resource.name: future.result()["cleanup.policy"].value
                for resource, future in admin.describe_configs(resources).items()}
    except KafkaException as error:
        if error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise


def test_aggregated_topics_are_compacted(election):
    seed(election, "--voters", "0")
    policies = waiting.until(lambda: cleanup_policies(election), timeout_s=30, what="the result topics' configs")
    assert set(policies.values()) == {"compact"} and len(policies) == len(topics.AGGREGATED)


def test_seeding_again_duplicates_no_one_and_tops_up(election):
    seed(election, "--voters", "100")
    again = seed(election, "--voters", "100")
    assert "0 new" in again.stdout
    assert query(election, "SELECT count(*) FROM voters") == [(100,)]
    assert query(election, "SELECT count(*) FROM candidates") == [(3,)]
    assert len(read_to_end(election, election.topic(topics.VOTERS))) == 100
    seed(election, "--voters", "130")
    assert query(election, "SELECT count(*) FROM voters") == [(130,)]
    assert len(read_to_end(election, election.topic(topics.VOTERS))) == 130


def test_seeding_from_the_randomuser_api_uses_its_people(election, randomuser):
    result = succeeded(processes.run(election, "main.py", "--source", "randomuser", "--voters", "5",
                                     "--candidates", "2", env={"RANDOMUSER_URL": randomuser.url}))
    assert "RandomUser API" in result.stdout
    names = {row[0] for row in query(election, "SELECT voter_name FROM voters")}
    assert len(names) == 5 and names <= {f"{p['name']['first']} {p['name']['last']}" for p in RECORDED["results"]}
    assert all(len(request["results"]) == 1 for request in randomuser.requests)


def test_reset_asks_for_confirmation_and_yes_starts_a_fresh_election(election):
    seed(election, "--voters", "20")
    vote(election)
    refused = processes.run(election, "main.py", "--reset", "--source", "offline")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert query(election, "SELECT count(*) FROM votes") == [(20,)]
    seed(election, "--reset", "--yes", "--voters", "10")
    assert query(election, "SELECT count(*) FROM votes") == [(0,)]
    assert query(election, "SELECT count(*) FROM voters") == [(10,)]
    assert len(read_to_end(election, election.topic(topics.VOTERS))) == 10


def test_every_voter_votes_once_and_bad_messages_go_to_the_dead_letter_topic(election):
    seed(election, "--voters", "2000")
    registered = [row[0] for row in query(election, "SELECT voter_id FROM voters ORDER BY voter_id LIMIT 2")]
    bad_messages = [
        (b"bad-1", b"{this is not json"),
        (b"bad-2", b'["a", "list"]'),
        (b"bad-3", b'{"voter_name": "No Id"}'),
        (b"bad-4", b'{"voter_id": 12345}'),
        (b"bad-5", b'{"voter_id": "never-registered"}'),
    ]
    producer = Producer(kafka_io.producer_config(election, kafka_io.ADMIN))
    for key, value in bad_messages:
        producer.produce(election.topic(topics.VOTERS), key=key, value=value)
    for voter_id in registered:  # a voter published twice votes once
        producer.produce(election.topic(topics.VOTERS), key=voter_id, value=encode({"voter_id": voter_id}))
    assert producer.flush(10) == 0

    result = vote(election)
    assert "rejected 5" in result.stderr
    assert_every_voter_voted_exactly_once(election, 2000)

    dead = read_to_end(election, election.topic(topics.DEAD_LETTERS))
    assert sorted((message.key(), message.value()) for message in dead) == sorted(bad_messages)
    rejections = {message.key(): Rejection.from_headers(message.headers()) for message in dead}
    assert rejections[b"bad-1"].reason.startswith("not valid JSON")
    assert rejections[b"bad-4"].reason == "voter_id must be a string, got int"
    assert rejections[b"bad-5"].reason == "voter 'never-registered' is not registered"
    assert rejections[b"bad-5"].source_topic == election.topic(topics.VOTERS)
    assert all(rejection.stage == "voting" and rejection.source_offset >= 0 for rejection in rejections.values())

    # Running again changes nothing: every voter has voted.
    again = vote(election)
    assert "votes cast 0" in again.stderr
    assert query(election, "SELECT count(*) FROM votes") == [(2000,)]


def test_weights_make_a_candidate_lead(election):
    seed(election, "--voters", "600")
    vote(election, "--weights", "Savior Party=8", "--seed", "3")
    leader = query(election, "SELECT c.party_affiliation FROM votes JOIN candidates c USING (candidate_id) "
                             "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    assert leader == [("Savior Party",)]


def test_several_voting_processes_share_the_work_and_each_stops_when_the_group_is_at_the_end(election):
    seed(election, "--voters", "3000")
    stages = [processes.start(election, "voting.py", "--until-end", "--batch-size", "100") for _ in range(2)]
    outputs = [stage.communicate(timeout=300)[1] for stage in stages]
    assert [stage.returncode for stage in stages] == [0, 0], outputs
    assert all("exiting (--until-end)" in output for output in outputs), outputs
    assert_every_voter_voted_exactly_once(election, 3000)


def test_at_a_turnout_below_one_the_voters_who_stay_home_have_no_vote_and_no_dead_letter(election):
    seed(election, "--voters", "1000")
    result = vote(election, "--turnout", "0.6", "--seed", "11")
    voters = [voter_id for (voter_id,) in query(election, "SELECT voter_id FROM voters")]
    home = {voter_id for voter_id in voters if stays_home(voter_id, 0.6, salt=11)}
    assert 300 <= len(home) <= 500
    assert {voter_id for (voter_id,) in query(election, "SELECT voter_id FROM votes")} == set(voters) - home
    assert f"stayed home {len(home)}, rejected 0" in result.stderr
    assert read_to_end(election, election.topic(topics.DEAD_LETTERS)) == []


def test_a_rate_cap_spreads_the_votes_evenly_even_with_large_batches(election):
    seed(election, "--voters", "150")
    vote(election, "--rate", "40", "--batch-size", "5000")
    times = [voting_time for (voting_time,) in query(election, "SELECT voting_time FROM votes ORDER BY 1")]
    assert len(times) == 150
    # Uncapped, the 150 votes are one batch with one voting_time. At 40/s they take 146 / 40 s after the first
    # tenth of a second's 4; a vote's time is taken when its batch is stored, so allow the first batch's delay.
    assert (times[-1] - times[0]).total_seconds() >= (150 - 2 * 4) / 40
    most_at_once = max(Counter(times).values())
    assert most_at_once <= 4, f"{most_at_once} votes were cast at one instant: a burst, not a flow"


def votes_stored(election: Settings) -> int:
    return query(election, "SELECT count(*) FROM votes")[0][0]


def voting_killed_after(election: Settings, threshold: int, log: Path) -> tuple[int, int]:
    """Start voting.py and SIGKILL it once ``threshold`` votes are stored (or the wait fails); return its exit
    status and the votes stored when it died."""
    with processes.running(election, "voting.py", "--batch-size", "50", log=log) as process:

        def voted_past_threshold() -> bool:
            assert process.poll() is None, f"voting.py exited before it could be killed\n{last_lines(log)}"
            return votes_stored(election) >= threshold

        waiting.until(voted_past_threshold, timeout_s=120, what=f"{threshold} votes stored before a kill",
                      every_s=0.05, explain=lambda: last_lines(log))
        status = processes.stop("voting.py", process, how=signal.SIGKILL)
    return status, votes_stored(election)


def test_vote_counted_once_after_sigkill(election, tmp_path):
    voters = 5000
    seed(election, "--voters", str(voters))
    log = tmp_path / "voting.log"
    kills = [voting_killed_after(election, threshold, log) for threshold in (800, 2000, 3500)]
    assert [status for status, _ in kills] == [-signal.SIGKILL] * 3, f"voting.py ended otherwise\n{last_lines(log)}"
    assert kills[-1][1] < voters, "the kills came too late to test anything"
    vote(election)
    assert_every_voter_voted_exactly_once(election, voters)


def test_seeding_creates_the_postgres_schema_it_is_told_to_use(election):
    own_schema = replace(election, postgres_schema=f"{election.postgres_schema}_new")  # the same topics
    try:
        seed(own_schema, "--voters", "2")
        assert query(own_schema, "SELECT count(*) FROM voters") == [(2,)]
    finally:
        db.query(election, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(own_schema.postgres_schema)))
