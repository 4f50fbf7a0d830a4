"""The ballot box: validates ballots, stores each voter's one vote, and publishes it to ``votes_topic``.

Every way of voting goes through ``BallotBox.cast`` (``voting.py`` and the ballot page), so there is
one place where a vote is validated and one rule that makes it count once:

1. A ballot names a registered voter (``voters``) and a standing candidate (``candidates``), or it is
   rejected with a reason and nothing is written. A ballot with no candidate is a registered voter who stays
   home (``voting.py --turnout``): it is checked like the others and stores nothing.
2. The vote is inserted with ``ON CONFLICT (voter_id) DO NOTHING``: the ``votes`` primary key is the arbiter.
   A voter who already voted keeps the vote they have; the ballot in hand is discarded.
3. After the database commit, the *stored* vote of every voter in the batch is published to ``votes_topic``
   keyed by ``voter_id``, and ``cast`` returns only when the broker has acknowledged all of it.

So a crash between 2 and 3, a replayed batch or a re-published voter republishes the same stored vote (same
candidate, same time): ``votes_topic`` may carry a vote twice, never two different votes of one voter, and
the counting stage deduplicates by voter. Two ballots of one voter cast at the same instant from two
processes or threads (two browser tabs) store one vote, and both publish that one: the later statement waits
for the earlier one's insert, does nothing, and reads the committed vote.

A voter who votes in person (the ballot page) first proves who they are with ``identify``: their voter ID and
registration number must match one row of ``voters``.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import psycopg2.extensions
from confluent_kafka import Producer

from realtime_voting.core import topics
from realtime_voting.core.schemas import Candidate, Vote
from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io

logger = logging.getLogger(__name__)


# One statement per batch: the registered voters among the ballots, their new votes inserted (the primary
# key of ``votes`` is the one-vote-per-voter rule: ON CONFLICT DO NOTHING keeps the earlier vote), and each
# one's stored vote, new or earlier. ``candidate_id`` is null for a voter with no standing candidate chosen.
STORE_VOTES = """
WITH ballot AS (
    SELECT voter_id, ballot.candidate_id, address_state, gender, date_of_birth
    FROM unnest(%(voter_ids)s::text[], %(candidate_ids)s::text[]) AS ballot (voter_id, candidate_id)
    JOIN voters USING (voter_id)
), inserted AS (
    INSERT INTO votes (voter_id, candidate_id, voting_time)
    SELECT voter_id, candidate_id, %(voting_time)s FROM ballot WHERE candidate_id IS NOT NULL
    ON CONFLICT (voter_id) DO NOTHING
    RETURNING voter_id, candidate_id, voting_time
)
SELECT ballot.voter_id, ballot.address_state, ballot.gender, ballot.date_of_birth,
       coalesce(inserted.candidate_id, earlier.candidate_id), coalesce(inserted.voting_time, earlier.voting_time),
       inserted.voter_id IS NOT NULL
FROM ballot
LEFT JOIN inserted ON inserted.voter_id = ballot.voter_id
LEFT JOIN votes AS earlier ON earlier.voter_id = ballot.voter_id  -- the snapshot before the insert
"""


@dataclass(frozen=True)
class Ballot:
    voter_id: str
    candidate_id: str | None  # None: the voter turned up in the register but stays home (casts no vote)


@dataclass(frozen=True)
class CastResult:
    ballot: Ballot
    vote: Vote | None = None  # the voter's stored vote (this ballot's, or the earlier one)
    already_voted: bool = False  # True when ``vote`` was cast before this ballot
    rejection: str | None = None  # why nothing was stored

    @property
    def accepted(self) -> bool:
        return self.rejection is None

    @property
    def stayed_home(self) -> bool:
        """A registered voter's ballot without a candidate, who has no vote stored (earlier or now)."""
        return self.rejection is None and self.vote is None


@dataclass(frozen=True)
class Elector:
    """A registered voter who gave their voter ID and registration number; ``voted_at`` is when their stored vote
    was cast, None if they have not voted."""

    voter_id: str
    voter_name: str
    voted_at: datetime | None


def identify(connection: psycopg2.extensions.connection, voter_id: str, registration_number: str) -> Elector | None:
    """The registered voter with both this voter ID and this registration number, or None for any mismatch
    (the answer never tells which of the two was wrong; a caller must not either)."""
    row = db.find_voter(connection, voter_id, registration_number)
    return Elector(*row) if row else None


@dataclass(frozen=True)
class StoredBatch:
    """A batch of ballots stored in ``votes``: one result per ballot, and the stored votes to publish."""

    results: list[CastResult]
    votes: list[Vote]


class VoterState(NamedTuple):
    """A registered voter of a batch as the store statement sees them (one row of its answer)."""

    voter: tuple  # address_state, gender, date_of_birth: the voter's fields in a vote message
    candidate_id: str | None  # their stored vote's candidate; None if they have not voted (and did not now)
    voting_time: datetime | None
    new: bool  # their vote was stored by this statement


def insert_votes(cursor: psycopg2.extensions.cursor, choice_of: dict[str, str | None],
                 voting_time: datetime) -> dict[str, VoterState]:
    """``STORE_VOTES``: the batch's registered voters, their new votes inserted, and each one's stored vote."""
    # The batch as two arrays (one parameter each, instead of a VALUES row rendered per ballot); the voters'
    # fields, the insert and the earlier votes in one round trip.
    cursor.execute(STORE_VOTES, {"voter_ids": list(choice_of), "candidate_ids": list(choice_of.values()),
                                 "voting_time": voting_time})
    return {voter_id: VoterState(tuple(voter), candidate_id, cast_at, is_new)
            for voter_id, *voter, candidate_id, cast_at, is_new in cursor}


def read_raced_votes(cursor: psycopg2.extensions.cursor, states: dict[str, VoterState],
                     choice_of: dict[str, str | None]) -> dict[str, VoterState]:
    """The votes that another process committed while ``insert_votes`` ran, of voters it found without one.

    Such a vote is neither inserted by the statement nor in its snapshot of ``votes``: read it now that it is
    committed (two browser tabs of one voter, or two voting processes during a rebalance).
    """
    raced = [voter_id for voter_id, state in states.items()
             if state.candidate_id is None and choice_of[voter_id] is not None]
    if not raced:
        return {}
    cursor.execute("SELECT voter_id, candidate_id, voting_time FROM votes WHERE voter_id = ANY(%s)", (raced,))
    return {voter_id: VoterState(states[voter_id].voter, candidate_id, cast_at, False)
            for voter_id, candidate_id, cast_at in cursor}


def first_choices(ballots: Sequence[Ballot], standing: Container[str]) -> dict[str, str | None]:
    """Each voter of the batch -> the candidate of their first ballot for a standing candidate (the one that may
    be stored), None if they have none (they stay home, or named only candidates who are not standing)."""
    choice_of: dict[str, str | None] = {}
    for ballot in ballots:
        if choice_of.get(ballot.voter_id) is None:
            choice_of[ballot.voter_id] = ballot.candidate_id if ballot.candidate_id in standing else None
    return choice_of


def cast_results(ballots: Sequence[Ballot], states: dict[str, VoterState], votes: dict[str, Vote],
                 standing: Container[str]) -> list[CastResult]:
    """One result per ballot, in order, from what the store statement answered (``states``: registered voters
    only) and the stored votes. Only a voter's first ballot for a standing candidate can be the new vote."""
    results = []
    first_ballot_counted: set[str] = set()
    for ballot in ballots:
        if ballot.voter_id not in states:
            results.append(CastResult(ballot, rejection=f"voter {ballot.voter_id!r} is not registered"))
        elif ballot.candidate_id is None:  # stays home: nothing stored, an earlier vote stands (and is published)
            earlier = votes.get(ballot.voter_id)
            results.append(CastResult(ballot, vote=earlier, already_voted=earlier is not None))
        elif ballot.candidate_id not in standing:
            results.append(CastResult(
                ballot, rejection=f"candidate {ballot.candidate_id!r} is not standing in this election"))
        else:
            is_new = states[ballot.voter_id].new and ballot.voter_id not in first_ballot_counted
            first_ballot_counted.add(ballot.voter_id)
            results.append(CastResult(ballot, vote=votes[ballot.voter_id], already_voted=not is_new))
    return results


class BallotBox:
    """Casts batches of ballots against one PostgreSQL connection and one Kafka producer."""

    def __init__(self, settings: Settings, connection: psycopg2.extensions.connection, producer: Producer) -> None:
        self.connection = connection
        self.producer = producer
        self.votes_topic = settings.topic(topics.VOTES)
        self.candidates: dict[str, Candidate] = {}
        self.reload_candidates()

    def reload_candidates(self) -> None:
        self.candidates = {candidate.candidate_id: candidate for candidate in db.fetch_candidates(self.connection)}

    def cast(self, ballots: Sequence[Ballot], *, now: datetime | None = None) -> list[CastResult]:
        """Store and publish a batch of ballots; one result per ballot, in order.

        Raises ``psycopg2.Error`` (nothing of the batch was stored) or ``kafka_io.PublishFailed`` (stored but
        maybe not published): either way the caller retries the same batch, which is safe by design.
        """
        stored = self.store(ballots, now=now)
        self.publish(stored)
        return stored.results

    def store(self, ballots: Sequence[Ballot], *, now: datetime | None = None) -> StoredBatch:
        """``cast``'s first half: validate and store; the votes are not published yet (raises ``psycopg2.Error``).

        A caller that splits ``cast`` must ``publish`` every stored batch before it treats the ballots as done.
        """
        if any(ballot.candidate_id is not None and ballot.candidate_id not in self.candidates for ballot in ballots):
            self.reload_candidates()  # a candidate may have been added since this process started
        states = self._store(first_choices(ballots, self.candidates), now or datetime.now(UTC))
        votes = self._votes(states)
        return StoredBatch(cast_results(ballots, states, votes, self.candidates), list(votes.values()))

    def publish(self, stored: StoredBatch) -> int:
        """``cast``'s second half: publish the stored votes, acknowledged by the broker (raises ``PublishFailed``)."""
        return kafka_io.produce_all(self.producer, self.votes_topic,
                                    ((vote.voter_id, vote.to_message(), None) for vote in stored.votes))

    def republish(self, voter_ids: Sequence[str]) -> int:
        """Publish these voters' stored votes again; returns how many (voters who have not voted have none).

        For a vote that was stored but maybe never acknowledged by the broker (a caller that could not retry
        the batch). Harmless when it was: the counting stage deduplicates by voter.
        """
        states = self._store(dict.fromkeys(voter_ids), datetime.now(UTC))  # no choice: nothing inserted
        return self.publish(StoredBatch([], list(self._votes(states).values())))

    def _votes(self, states: dict[str, VoterState]) -> dict[str, Vote]:
        """The vote message of every voter of ``_store``'s answer who has a stored vote."""
        return {voter_id: self._vote(voter_id, state.candidate_id, state.voting_time, state.voter)
                for voter_id, state in states.items() if state.candidate_id is not None}

    def _store(self, choice_of: dict[str, str | None], voting_time: datetime) -> dict[str, VoterState]:
        """Insert the chosen votes in one transaction; return the state of every *registered* voter of
        ``choice_of`` after it (unregistered voters are left out)."""
        if not choice_of:
            return {}
        with self.connection, self.connection.cursor() as cursor:
            states = insert_votes(cursor, choice_of, voting_time)
            states.update(read_raced_votes(cursor, states, choice_of))
        return states

    def _vote(self, voter_id: str, candidate_id: str, voting_time: datetime, voter: tuple) -> Vote:
        address_state, gender, date_of_birth = voter
        return Vote(voter_id=voter_id, candidate_id=candidate_id, voting_time=voting_time.astimezone(UTC),
                    address_state=address_state, gender=gender, date_of_birth=date_of_birth)
