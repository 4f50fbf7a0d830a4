import dataclasses
from datetime import UTC, date, datetime

import pytest
import simplejson

from realtime_voting.schemas import VOTE_FIELDS, VOTER_MESSAGE_FIELDS, InvalidMessage, Vote, Voter, voter_id_of


def a_vote(**changes) -> Vote:
    vote = Vote(voter_id="v-1", candidate_id="c-1", voting_time=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
                address_state="Devon", gender="female", date_of_birth=date(1990, 5, 1))
    return dataclasses.replace(vote, **changes)


def test_vote_fields_list_every_field_of_the_vote_message_in_order():
    assert [name for name, _ in VOTE_FIELDS] == [field.name for field in dataclasses.fields(Vote)]


def test_a_vote_message_carries_the_ballot_and_what_only_the_voter_has_to_group_by():
    message = simplejson.loads(a_vote().to_message())
    assert list(message) == [name for name, _ in VOTE_FIELDS]
    assert message["voting_time"] == "2026-11-24T12:00:00+00:00"
    assert message["date_of_birth"] == "1990-05-01"


def test_a_voter_message_is_the_voter_id_alone():
    """No registration number (the ballot page's sign-in secret), contact detail or picture goes to Kafka."""
    voter = Voter("v-7", "Ann Lee", date(1990, 5, 1), "female", "GB", "REG-SECRET", "1 High St", "Exeter", "Devon",
                  "United Kingdom", "EX1", "ann@example.org", "01234", "07777", "data:image/svg+xml;base64,AAAA", 36)
    assert simplejson.loads(voter.to_message()) == {"voter_id": "v-7"}
    assert tuple(simplejson.loads(voter.to_message())) == VOTER_MESSAGE_FIELDS
    assert voter_id_of(voter.to_message()) == "v-7"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'{"voter_name": "Nobody"}', "missing voter_id"),
        (b'{"voter_id": 42}', "voter_id must be a string, got int"),
        (b'{"voter_id": "  "}', "voter_id must be 1 to 255 characters"),
        (None, "empty message"),
    ],
)
def test_a_voter_message_without_a_usable_voter_id_is_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidMessage, match=reason):
        voter_id_of(raw)


def test_only_the_voter_id_is_taken_from_a_voter_message():
    assert voter_id_of(b'{"voter_id": "v-9", "address_state": "Forged"}') == "v-9"
