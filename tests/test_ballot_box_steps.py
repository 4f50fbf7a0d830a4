"""The ballot box's rules as plain functions: which ballot may be stored, and what each ballot's result is."""

from __future__ import annotations

from datetime import UTC, datetime

from realtime_voting.voting.ballot_box import Ballot, VoterState, cast_results, first_choices

STANDING = {"c-1", "c-2"}
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_voters_first_ballot_for_a_standing_candidate_is_the_one_offered_for_storing():
    ballots = [Ballot("v-1", "nobody-standing"), Ballot("v-1", "c-2"), Ballot("v-1", "c-1"),
               Ballot("v-2", None), Ballot("v-3", "c-1")]
    assert first_choices(ballots, STANDING) == {"v-1": "c-2", "v-2": None, "v-3": "c-1"}


def test_each_ballot_gets_its_own_result_and_only_the_first_counts_as_the_new_vote():
    ballots = [Ballot("v-1", "c-1"), Ballot("v-1", "c-2"), Ballot("v-2", None), Ballot("v-3", "gone"),
               Ballot("nobody", "c-1"), Ballot("v-4", "c-2")]
    states = {"v-1": VoterState((), "c-1", NOON, True), "v-2": VoterState((), None, None, False),
              "v-3": VoterState((), None, None, False), "v-4": VoterState((), "c-1", NOON, False)}
    votes = {"v-1": "vote of v-1", "v-4": "earlier vote of v-4"}
    results = cast_results(ballots, states, votes, STANDING)
    assert [(result.vote, result.already_voted, result.stayed_home, result.rejection) for result in results] == [
        ("vote of v-1", False, False, None),
        ("vote of v-1", True, False, None),
        (None, False, True, None),
        (None, False, False, "candidate 'gone' is not standing in this election"),
        (None, False, False, "voter 'nobody' is not registered"),
        ("earlier vote of v-4", True, False, None),
    ]
