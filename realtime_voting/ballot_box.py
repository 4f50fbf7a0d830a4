"""The ballot box: validates ballots, stores each voter's one vote, and publishes it to ``votes_topic``.

Every way of voting goes through ``BallotBox.cast`` (``voting.py`` today, the ballot page later), so there is
one place where a vote is validated and one rule that makes it count once:

1. A ballot names a registered voter (``voters``) and a standing candidate (``candidates``), or it is
   rejected with a reason and nothing is written.
2. The vote is inserted with ``ON CONFLICT (voter_id) DO NOTHING``: the ``votes`` primary key is the arbiter.
   A voter who already voted keeps the vote they have; the ballot in hand is discarded.
3. After the database commit, the *stored* vote of every voter in the batch is published to ``votes_topic``
   keyed by ``voter_id``, and ``cast`` returns only when the broker has acknowledged all of it.

So a crash between 2 and 3, a replayed batch or a re-published voter republishes the same stored vote (same
candidate, same time): ``votes_topic`` may carry a vote twice, never two different votes of one voter, and
the counting stage deduplicates by voter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg2.extensions
from confluent_kafka import Producer
from psycopg2.extras import execute_values

from realtime_voting import db, kafka_io, topics
from realtime_voting.schemas import Candidate, Vote
from realtime_voting.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ballot:
    voter_id: str
    candidate_id: str


@dataclass(frozen=True)
class CastResult:
    ballot: Ballot
    vote: Vote | None = None  # the voter's stored vote (this ballot's, or the earlier one)
    already_voted: bool = False  # True when ``vote`` was cast before this ballot
    rejection: str | None = None  # why nothing was stored

    @property
    def accepted(self) -> bool:
        return self.rejection is None


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
        voting_time = now or datetime.now(timezone.utc)
        voters = self._registered_voters({ballot.voter_id for ballot in ballots})
        if any(ballot.candidate_id not in self.candidates for ballot in ballots):
            self.reload_candidates()  # a candidate may have been added since this process started
        rejections: dict[int, str] = {}
        first_ballot_of: dict[str, Ballot] = {}
        for index, ballot in enumerate(ballots):
            if ballot.voter_id not in voters:
                rejections[index] = f"voter {ballot.voter_id!r} is not registered"
            elif ballot.candidate_id not in self.candidates:
                rejections[index] = f"candidate {ballot.candidate_id!r} is not standing in this election"
            else:
                first_ballot_of.setdefault(ballot.voter_id, ballot)

        stored, newly_cast = self._store(list(first_ballot_of.values()), voting_time)
        votes = {voter_id: self._vote(voter_id, candidate_id, cast_at, voters[voter_id])
                 for voter_id, (candidate_id, cast_at) in stored.items()}
        kafka_io.produce_all(self.producer, self.votes_topic,
                             ((vote.voter_id, vote.to_message(), None) for vote in votes.values()))

        results = []
        for index, ballot in enumerate(ballots):
            if index in rejections:
                results.append(CastResult(ballot, rejection=rejections[index]))
            else:
                is_new = ballot is first_ballot_of[ballot.voter_id] and ballot.voter_id in newly_cast
                results.append(CastResult(ballot, vote=votes[ballot.voter_id], already_voted=not is_new))
        return results

    def _registered_voters(self, voter_ids: set[str]) -> dict[str, tuple]:
        """The fields a vote message needs, for those of ``voter_ids`` who are registered."""
        with self.connection, self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT voter_id, address_state, address_country, gender, date_of_birth "
                "FROM voters WHERE voter_id = ANY(%s)",
                (list(voter_ids),),
            )
            return {row[0]: row[1:] for row in cursor.fetchall()}

    def _store(self, ballots: list[Ballot], voting_time: datetime) -> tuple[dict[str, tuple[str, datetime]], set[str]]:
        """Insert the votes in one transaction; return every voter's stored (candidate, time) and the new ones."""
        if not ballots:
            return {}, set()
        with self.connection, self.connection.cursor() as cursor:
            inserted = execute_values(
                cursor,
                "INSERT INTO votes (voter_id, candidate_id, voting_time) VALUES %s "
                "ON CONFLICT (voter_id) DO NOTHING RETURNING voter_id",  # the one-vote-per-voter rule
                [(ballot.voter_id, ballot.candidate_id, voting_time) for ballot in ballots],
                page_size=len(ballots),
                fetch=True,
            )
            newly_cast = {row[0] for row in inserted}
            stored = {ballot.voter_id: (ballot.candidate_id, voting_time)
                      for ballot in ballots if ballot.voter_id in newly_cast}
            earlier = [ballot.voter_id for ballot in ballots if ballot.voter_id not in newly_cast]
            if earlier:
                cursor.execute("SELECT voter_id, candidate_id, voting_time FROM votes WHERE voter_id = ANY(%s)",
                               (earlier,))
                stored.update({voter_id: (candidate_id, cast_at) for voter_id, candidate_id, cast_at in cursor})
        return stored, newly_cast

    def _vote(self, voter_id: str, candidate_id: str, voting_time: datetime, voter: tuple) -> Vote:
        candidate = self.candidates.get(candidate_id)
        if candidate is None:  # a vote stored for a candidate added after this process started
            self.reload_candidates()
            candidate = self.candidates[candidate_id]
        address_state, address_country, gender, date_of_birth = voter
        return Vote(
            voter_id=voter_id,
            candidate_id=candidate_id,
            voting_time=voting_time.astimezone(timezone.utc),
            candidate_name=candidate.candidate_name,
            party_affiliation=candidate.party_affiliation,
            photo_url=candidate.photo_url,
            address_state=address_state,
            address_country=address_country,
            gender=gender,
            date_of_birth=date_of_birth,
        )
