"""The ballot box against the real PostgreSQL and broker: one stored vote per voter, and only that one published."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Producer

from realtime_voting import db, kafka_io, topics
from realtime_voting.ballot_box import Ballot, BallotBox
from realtime_voting.settings import Settings
from tests.conftest import query, read_topic
from tests.test_seeding_and_voting import seed

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def ballot_box(election: Settings):
    seed(election, "--voters", "4", "--candidates", "2")
    connection = db.connect(election)
    producer = Producer(kafka_io.producer_config(election))
    try:
        yield BallotBox(election, connection, producer)
    finally:
        producer.flush(10)
        connection.close()


def registered(election: Settings) -> tuple[list[str], list[str]]:
    voters = [row[0] for row in query(election, "SELECT voter_id FROM voters ORDER BY voter_id")]
    candidates = [row[0] for row in query(election, "SELECT candidate_id FROM candidates ORDER BY candidate_id")]
    return voters, candidates


def published(election: Settings) -> list[dict]:
    return [json.loads(message.value()) for message in read_topic(election, election.topic(topics.VOTES))]


def test_a_vote_is_stored_and_the_stored_vote_published(election, ballot_box):
    (voter, *_), (candidate, _) = registered(election)
    [result] = ballot_box.cast([Ballot(voter, candidate)], now=NOON)
    assert result.accepted and not result.already_voted
    assert (result.vote.candidate_id, result.vote.voting_time) == (candidate, NOON)
    assert query(election, "SELECT voter_id, candidate_id, voting_time FROM votes") == [(voter, candidate, NOON)]
    [message] = published(election)
    assert (message["voter_id"], message["candidate_id"], message["voting_time"]) == (
        voter, candidate, "2026-11-24T12:00:00+00:00")
    assert message["address_state"] and message["candidate_name"]


def test_a_second_ballot_keeps_the_first_vote_and_republishes_it(election, ballot_box):
    (voter, *_), (first, second) = registered(election)
    ballot_box.cast([Ballot(voter, first)], now=NOON)
    [again] = ballot_box.cast([Ballot(voter, second)], now=NOON + timedelta(minutes=5))
    assert again.accepted and again.already_voted
    assert (again.vote.candidate_id, again.vote.voting_time) == (first, NOON)
    assert query(election, "SELECT candidate_id FROM votes") == [(first,)]
    assert {message["candidate_id"] for message in published(election)} == {first}


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
    assert [message["voter_id"] for message in published(election)] == [other]


def test_a_ballot_for_an_unknown_candidate_does_not_hide_the_voters_valid_one(election, ballot_box):
    (voter, *_), (candidate, _) = registered(election)
    results = ballot_box.cast([Ballot(voter, "no-such-candidate"), Ballot(voter, candidate)], now=NOON)
    assert results[0].rejection and results[1].accepted and not results[1].already_voted
    assert query(election, "SELECT candidate_id FROM votes") == [(candidate,)]
