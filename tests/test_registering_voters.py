"""Registering voters in PostgreSQL (``db.insert_voters``): each voter once, whatever a batch repeats."""

from __future__ import annotations

from realtime_voting.core.settings import Settings
from realtime_voting.seeding import people
from realtime_voting.services import db
from realtime_voting.services.db import query


def offline_voters(count: int, seed: int):
    return [people.voter_from_randomuser(person) for person in people.OfflineSource(seed).people(count)]


def test_a_batch_of_new_voters_is_registered_whole(election: Settings):
    voters = offline_voters(50, seed=1)
    with db.connected(election) as connection:
        db.create_schema(connection, election.postgres_schema)
        assert db.insert_voters(connection, voters) == voters
    assert query(election, "SELECT count(*), count(DISTINCT voter_id) FROM voters") == [(50, 50)]


def test_a_batch_naming_registered_voters_registers_only_the_new_ones(election: Settings):
    first, second = offline_voters(30, seed=2), offline_voters(20, seed=3)
    with db.connected(election) as connection:
        db.create_schema(connection, election.postgres_schema)
        db.insert_voters(connection, first)
        assert db.insert_voters(connection, first[:10] + second) == second
        assert db.insert_voters(connection, first) == []
    assert query(election, "SELECT count(*) FROM voters") == [(50,)]
    stored = dict(query(election, "SELECT voter_id, voter_name FROM voters"))
    assert all(stored[voter.voter_id] == voter.voter_name for voter in first + second)
