"""The ballot box against the real PostgreSQL and broker: one stored vote per voter, and only that one published."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from realtime_voting.core import topics
from realtime_voting.core.schemas import Vote
from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io
from realtime_voting.services.db import query
from realtime_voting.services.kafka_io import read_to_end
from realtime_voting.voting.ballot_box import Ballot, BallotBox, CastResult, Elector, identify
from tests.support.stages import seed

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def ballot_box(election: Settings):
    seed(election, "--voters", "4", "--candidates", "2")
    producer = Producer(kafka_io.producer_config(election, kafka_io.VOTING))
    with db.connected(election) as connection:
        try:
            yield BallotBox(election, connection, producer)
        finally:
            producer.flush(10)


def registered(election: Settings) -> tuple[list[str], list[str]]:
    voters = [row[0] for row in query(election, "SELECT voter_id FROM voters ORDER BY voter_id")]
    candidates = [row[0] for row in query(election, "SELECT candidate_id FROM candidates ORDER BY candidate_id")]
    return voters, candidates


def published(election: Settings) -> list[Vote]:
    return [Vote.from_message(message.value()) for message in read_to_end(election, election.topic(topics.VOTES))]


def test_a_vote_is_stored_and_the_stored_vote_published(election, ballot_box):
    (voter, *_), (candidate, _) = registered(election)
    [result] = ballot_box.cast([Ballot(voter, candidate)], now=NOON)
    assert result.accepted and not result.already_voted
    assert (result.vote.candidate_id, result.vote.voting_time) == (candidate, NOON)
    assert query(election, "SELECT voter_id, candidate_id, voting_time FROM votes") == [(voter, candidate, NOON)]
    [message] = published(election)
    assert (message.voter_id, message.candidate_id, message.voting_time) == (voter, candidate, NOON)
    assert message.address_state and message.gender


def test_a_second_ballot_keeps_the_first_vote_and_republishes_it(election, ballot_box):
    (voter, *_), (first, second) = registered(election)
    ballot_box.cast([Ballot(voter, first)], now=NOON)
    [again] = ballot_box.cast([Ballot(voter, second)], now=NOON + timedelta(minutes=5))
    assert again.accepted and again.already_voted
    assert (again.vote.candidate_id, again.vote.voting_time) == (first, NOON)
    assert query(election, "SELECT candidate_id FROM votes") == [(first,)]
    assert {message.candidate_id for message in published(election)} == {first}


def test_two_ballots_of_one_voter_in_one_batch_store_the_first(election, ballot_box):
    (voter, *_), (first, second) = registered(election)
    results = ballot_box.cast([Ballot(voter, first), Ballot(voter, second)], now=NOON)
    assert [(result.already_voted, result.vote.candidate_id) for result in results] == [
        (False, first), (True, first)]
    assert query(election, "SELECT count(*) FROM votes") == [(1,)]


def test_unregistered_voters_and_unknown_candidates_are_rejected_and_nothing_is_stored(election, ballot_box):
    (voter, other, *_), (candidate, _) = registered(election)
    results = ballot_box.cast([Ballot("nobody", candidate), Ballot(voter, "no-such-candidate"),
                               Ballot(other, candidate)], now=NOON)
    assert [result.rejection for result in results] == [
        "voter 'nobody' is not registered",
        "candidate 'no-such-candidate' is not standing in this election",
        None,
    ]
    assert query(election, "SELECT voter_id FROM votes") == [(other,)]
    assert [message.voter_id for message in published(election)] == [other]


def test_a_voter_who_stays_home_stores_nothing_and_an_earlier_vote_of_theirs_stands(election, ballot_box):
    (home, voted_earlier, *_), (candidate, _) = registered(election)
    ballot_box.cast([Ballot(voted_earlier, candidate)], now=NOON)
    results = ballot_box.cast([Ballot(home, None), Ballot(voted_earlier, None), Ballot("nobody", None)],
                              now=NOON + timedelta(minutes=1))
    assert [(result.stayed_home, result.already_voted) for result in results[:2]] == [(True, False), (False, True)]
    assert results[1].vote.candidate_id == candidate
    assert results[2].rejection == "voter 'nobody' is not registered"
    assert query(election, "SELECT voter_id, voting_time FROM votes") == [(voted_earlier, NOON)]
    assert [message.voter_id for message in published(election)] == [voted_earlier, voted_earlier]


def test_a_ballot_for_an_unknown_candidate_does_not_hide_the_voters_valid_one(election, ballot_box):
    (voter, *_), (candidate, _) = registered(election)
    results = ballot_box.cast([Ballot(voter, "no-such-candidate"), Ballot(voter, candidate)], now=NOON)
    assert results[0].rejection and results[1].accepted and not results[1].already_voted
    assert query(election, "SELECT candidate_id FROM votes") == [(candidate,)]


def test_two_ballots_of_one_voter_cast_at_once_from_two_connections_store_and_publish_one_vote(election, ballot_box):
    """Two browser tabs submitting at the same instant: each cast has its own connection and ballot box."""
    (voter, *_), (first, second) = registered(election)
    both_ready = threading.Barrier(2)

    def cast_in_a_tab_of_its_own(candidate: str) -> CastResult:
        with db.connected(election) as connection:
            box = BallotBox(election, connection, ballot_box.producer)  # a thread-safe producer, shared
            both_ready.wait(timeout=30)  # both casts start together, so that their statements overlap
            [result] = box.cast([Ballot(voter, candidate)])
            return result

    with ThreadPoolExecutor(max_workers=2) as tabs:
        results = list(tabs.map(cast_in_a_tab_of_its_own, (first, second)))
    [(stored_candidate, stored_at)] = query(election, "SELECT candidate_id, voting_time FROM votes")
    assert all(result.accepted for result in results)
    assert sorted(result.already_voted for result in results) == [False, True]
    assert results[0].vote == results[1].vote
    assert (results[0].vote.candidate_id, results[0].vote.voting_time) == (stored_candidate, stored_at)
    assert {message.candidate_id for message in published(election)
            if message.voter_id == voter} == {stored_candidate}


def test_a_voter_is_identified_only_by_their_own_voter_id_and_registration_number(election, ballot_box):
    [(voter, name, number), (other, _, other_number), *_] = query(
        election, "SELECT voter_id, voter_name, registration_number FROM voters ORDER BY voter_id")
    connection = ballot_box.connection
    assert identify(connection, voter, number) == Elector(voter, name, None)
    assert identify(connection, voter, other_number) is None
    assert identify(connection, other, number) is None
    assert identify(connection, "nobody", number) is None
    assert identify(connection, voter, "' OR '1'='1") is None


def test_an_identified_voter_who_has_voted_carries_the_time_of_their_vote(election, ballot_box):
    [(voter, number)] = query(election, "SELECT voter_id, registration_number FROM voters ORDER BY voter_id LIMIT 1")
    ballot_box.cast([Ballot(voter, registered(election)[1][0])], now=NOON)
    assert identify(ballot_box.connection, voter, number).voted_at == NOON


def test_republishing_sends_the_stored_votes_again_and_nothing_for_voters_who_have_not_voted(election, ballot_box):
    (voter, other, *_), (candidate, _) = registered(election)
    ballot_box.cast([Ballot(voter, candidate)], now=NOON)
    assert ballot_box.republish([voter, other]) == 1
    assert [(message.voter_id, message.candidate_id, message.voting_time) for message in published(election)
            ] == [(voter, candidate, NOON)] * 2
    assert query(election, "SELECT count(*) FROM votes") == [(1,)]
