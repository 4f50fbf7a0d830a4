import dataclasses
import json  # an independent reader: the messages are plain JSON, whatever library wrote them
from datetime import UTC, date, datetime

import pytest

from realtime_voting.core.schemas import (
    DEAD_LETTER_HEADERS,
    RESULT_GROUP_FIELDS,
    VOTE_FIELDS,
    VOTE_REQUIRED,
    VOTER_MESSAGE_FIELDS,
    InvalidMessage,
    Rejection,
    Result,
    Vote,
    Voter,
    keep_highest,
    voter_id_of,
)


def a_vote(**changes) -> Vote:
    vote = Vote(voter_id="v-1", candidate_id="c-1", voting_time=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
                address_state="Devon", gender="female", date_of_birth=date(1990, 5, 1))
    return dataclasses.replace(vote, **changes)


def test_vote_fields_list_every_field_of_the_vote_message_in_order():
    assert [name for name, _ in VOTE_FIELDS] == [field.name for field in dataclasses.fields(Vote)]
    assert set(VOTE_REQUIRED) <= {name for name, _ in VOTE_FIELDS}


def test_a_vote_message_carries_the_ballot_and_what_only_the_voter_has_to_group_by():
    message = json.loads(a_vote().to_message())
    assert list(message) == [name for name, _ in VOTE_FIELDS]
    assert message["voting_time"] == "2026-11-24T12:00:00+00:00"
    assert message["date_of_birth"] == "1990-05-01"


def test_a_voter_message_is_the_voter_id_alone():
    """No registration number (the ballot page's sign-in secret), contact detail or picture goes to Kafka."""
    voter = Voter("v-7", "Ann Lee", date(1990, 5, 1), "female", "GB", "REG-SECRET", "1 High St", "Exeter", "Devon",
                  "United Kingdom", "EX1", "ann@example.org", "01234", "07777", "data:image/svg+xml;base64,AAAA", 36)
    assert json.loads(voter.to_message()) == {"voter_id": "v-7"}
    assert tuple(json.loads(voter.to_message())) == VOTER_MESSAGE_FIELDS
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


def test_a_vote_read_back_from_its_message_is_the_vote():
    assert Vote.from_message(a_vote().to_message()) == a_vote()
    assert Vote.from_message(a_vote(date_of_birth=None).to_message()) == a_vote(date_of_birth=None)


def test_result_group_fields_list_every_field_of_a_result_but_its_total_in_order():
    assert [name for name, _ in RESULT_GROUP_FIELDS] + ["total_votes"] == [
        field.name for field in dataclasses.fields(Result)]


def test_a_result_message_has_its_groups_fields_and_total_and_the_others_are_none():
    result = Result.from_message(b'{"candidate_id":"c-1","window_start":"2026-11-24T12:01:00.000Z",'
                                 b'"window_end":"2026-11-24T12:02:00.000Z","total_votes":3}')
    assert result == Result(candidate_id="c-1", window_start=datetime(2026, 11, 24, 12, 1, tzinfo=UTC),
                            window_end=datetime(2026, 11, 24, 12, 2, tzinfo=UTC), total_votes=3)
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        Result.from_message(b"{")


def test_a_rejection_travels_in_the_dlq_headers_and_back():
    rejection = Rejection(stage="voting", reason="voter 'x' is not registered", source_topic="voters_topic",
                          source_partition=2, source_offset=41)
    assert dict(rejection.headers()) == {
        "dlq.stage": b"voting", "dlq.reason": b"voter 'x' is not registered", "dlq.source.topic": b"voters_topic",
        "dlq.source.partition": b"2", "dlq.source.offset": b"41"}
    assert set(DEAD_LETTER_HEADERS.values()) == set(dict(rejection.headers()))
    assert Rejection.from_headers(rejection.headers()) == rejection


def test_a_reader_keeps_the_highest_total_it_has_seen_for_a_group():
    latest: dict[str, Result] = {}
    for total in (3, 7, 5):  # 5 after 7: a replay re-sending an older total
        keep_highest(latest, "c-1", Result(candidate_id="c-1", total_votes=total))
    assert latest["c-1"].total_votes == 7
