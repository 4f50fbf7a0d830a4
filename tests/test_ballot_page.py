"""The "Cast your vote" page, headless (Streamlit's AppTest) against the real stack; its sign-in throttling's
policy as pure functions (the throttle across sessions and addresses: tests/test_sign_in_throttle.py). A vote cast
in a real browser and counted by the running Spark job: tests/test_demo.py."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from confluent_kafka import Producer
from streamlit.testing.v1 import AppTest

from realtime_voting.core import topics
from realtime_voting.core.schemas import Vote
from realtime_voting.core.settings import Settings
from realtime_voting.services import kafka_io
from realtime_voting.services.db import query
from realtime_voting.services.kafka_io import read_to_end
from realtime_voting.web import ballot_page
from realtime_voting.web.ballot_page import NO_MATCH, throttled_address, wait_after, waits_by_failures
from realtime_voting.web.dashboard import BALLOT_PAGE
from tests.support.ballot_page import ballot_page_of, sign_in, signed_in, texts, voters
from tests.support.ports import free_ports
from tests.support.stages import seed


@pytest.fixture
def seeded(election: Settings) -> Settings:
    """An election of 3 voters and 2 candidates, nobody has voted."""
    seed(election, "--voters", "3", "--candidates", "2")
    return election


def candidates(election: Settings) -> dict[str, str]:
    return dict(query(election, "SELECT candidate_id, candidate_name FROM candidates ORDER BY candidate_id"))


def published(election: Settings) -> list[tuple[str, str]]:
    """(voter_id, candidate_id) of every message on votes_topic."""
    votes = [Vote.from_message(message.value()) for message in read_to_end(election, election.topic(topics.VOTES))]
    return [(cast.voter_id, cast.candidate_id) for cast in votes]


def cast(app: AppTest, candidate_id: str) -> AppTest:
    app.radio(key="ballot_choice").set_value(candidate_id)
    app.checkbox(key="ballot_confirmed").check()
    app.button(key="ballot_submit").click().run()
    assert not app.exception, app.exception
    return app


def test_a_signed_in_voter_sees_the_candidates_and_casts_a_vote_that_is_stored_and_published(seeded, streamlit_app):
    (voter, number), *_ = voters(seeded)
    chosen, name = next(iter(candidates(seeded).items()))
    app = sign_in(ballot_page_of(streamlit_app(seeded)), voter, number)
    assert signed_in(app)
    assert len(app.image) == 2  # a photo per candidate
    assert all(any(candidate in text for text in texts(app.markdown)) for candidate in candidates(seeded).values())
    cast(app, chosen)
    [success] = texts(app.success)
    assert f"Your vote for {name}" in success and "within seconds" in success
    assert query(seeded, "SELECT voter_id, candidate_id FROM votes") == [(voter, chosen)]
    assert published(seeded) == [(voter, chosen)]
    assert not app.radio  # no second ballot in this session


def test_a_voter_who_has_voted_is_told_when_and_gets_no_ballot(seeded, streamlit_app):
    (voter, number), *_ = voters(seeded)
    first = next(iter(candidates(seeded)))
    cast(sign_in(ballot_page_of(streamlit_app(seeded)), voter, number), first)
    [(voted_at,)] = query(seeded, "SELECT voting_time FROM votes")

    again = sign_in(ballot_page_of(streamlit_app(seeded)), voter, number)
    [told] = texts(again.info)
    assert told.startswith("You have already voted") and ballot_page.utc(voted_at) in told
    assert not again.radio
    assert query(seeded, "SELECT count(*) FROM votes") == [(1,)]


def test_a_vote_stored_while_the_broker_failed_is_published_when_the_voter_signs_in_again(seeded, streamlit_app):
    (voter, number), *_ = voters(seeded)
    chosen = next(iter(candidates(seeded)))
    # What a broker failure between the commit and the acknowledgement leaves: a stored vote, never published.
    query(seeded, "INSERT INTO votes (voter_id, candidate_id, voting_time) VALUES (%s, %s, now()) RETURNING 1",
          (voter, chosen))
    assert published(seeded) == []
    sign_in(ballot_page_of(streamlit_app(seeded)), voter, number)
    assert published(seeded) == [(voter, chosen)]


def test_a_second_ballot_from_another_tab_is_refused_with_the_time_of_the_first_and_not_published(
        seeded, streamlit_app):
    (voter, number), *_ = voters(seeded)
    first, second = candidates(seeded)
    late_tab = sign_in(ballot_page_of(streamlit_app(seeded)), voter, number)  # shows a ballot...
    cast(sign_in(ballot_page_of(streamlit_app(seeded)), voter, number), first)  # ...while another tab votes
    cast(late_tab, second)
    [(stored, voted_at)] = query(seeded, "SELECT candidate_id, voting_time FROM votes")
    [refused] = texts(late_tab.warning)
    assert refused.startswith("You have already voted") and ballot_page.utc(voted_at) in refused
    assert stored == first
    assert {candidate for voter_id, candidate in published(seeded) if voter_id == voter} == {first}


@pytest.mark.parametrize("mismatch", ["wrong registration number", "another voter's number", "unknown voter ID"])
def test_wrong_credentials_get_one_message_that_does_not_say_which_was_wrong(seeded, streamlit_app, mismatch):
    (voter, number), (other, other_number), *_ = voters(seeded)
    voter_id, registration_number = {
        "wrong registration number": (voter, number + "0"),
        "another voter's number": (voter, other_number),
        "unknown voter ID": (str(uuid.uuid4()), number),
    }[mismatch]
    app = sign_in(ballot_page_of(streamlit_app(seeded)), voter_id, registration_number)
    assert texts(app.error) == [NO_MATCH]
    assert not signed_in(app) and not app.radio
    assert query(seeded, "SELECT count(*) FROM votes") == [(0,)]


def test_after_repeated_failures_the_page_refuses_to_check_even_the_right_credentials(seeded, streamlit_app,
                                                                                     monkeypatch):
    (voter, number), *_ = voters(seeded)
    monkeypatch.setattr(ballot_page, "FIRST_WAIT_S", 60.0)  # a wait no slow run of this test outlasts
    app = ballot_page_of(streamlit_app(seeded))
    for _ in range(ballot_page.FAILURES_BEFORE_WAITING - 1):
        sign_in(app, voter, "not-" + number)
        assert texts(app.error) == [NO_MATCH]
    sign_in(app, voter, "not-" + number)
    assert texts(app.error) == [NO_MATCH, "Too many attempts: try again in 60 s."]
    sign_in(app, voter, number)
    [refused] = texts(app.error)  # and no NO_MATCH: nothing was checked
    assert refused.startswith("Too many attempts: try again in") and not signed_in(app)


def test_a_ballot_for_a_candidate_who_is_not_standing_is_rejected_by_the_backend_and_nothing_stored(seeded):
    (voter, _), *_ = voters(seeded)
    producer = Producer(kafka_io.producer_config(seeded, kafka_io.VOTING))
    result = ballot_page.cast_vote(seeded, producer, voter, "no-such-candidate")
    assert result.rejection == "candidate 'no-such-candidate' is not standing in this election"
    assert query(seeded, "SELECT count(*) FROM votes") == [(0,)]
    assert published(seeded) == []


def test_a_candidate_withdrawn_after_the_ballot_was_shown_is_rejected_on_the_page(seeded, streamlit_app):
    (voter, number), *_ = voters(seeded)
    withdrawn = next(iter(candidates(seeded)))
    app = sign_in(ballot_page_of(streamlit_app(seeded)), voter, number)
    query(seeded, "DELETE FROM candidates WHERE candidate_id = %s RETURNING 1", (withdrawn,))
    cast(app, withdrawn)  # the page still shows the ballot it drew
    assert texts(app.error) == [
        f"Your vote was not cast: candidate {withdrawn!r} is not standing in this election."]
    assert query(seeded, "SELECT count(*) FROM votes") == [(0,)]


def test_the_read_only_app_has_the_results_page_and_no_ballot(seeded, streamlit_app):
    app = streamlit_app(replace(seeded, dashboard_read_only=True))
    app.run()
    assert texts(app.title) == ["Realtime election results"]
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page(BALLOT_PAGE)
    assert texts(ballot_page_of(streamlit_app(seeded)).title) == ["Cast your vote"]  # and it is there otherwise


def test_unreachable_postgresql_is_named_at_sign_in_instead_of_a_traceback(streamlit_app):
    kafka_port, postgres_port = free_ports(2)
    nowhere = replace(Settings.from_env({}), kafka_bootstrap_servers=f"localhost:{kafka_port}",
                      postgres_port=postgres_port)
    app = sign_in(ballot_page_of(streamlit_app(nowhere)), "someone", "AB123")
    [error] = texts(app.error)
    assert f"PostgreSQL at localhost:{postgres_port} (POSTGRES_HOST/POSTGRES_PORT) is not reachable" in error
    assert NO_MATCH not in error


def test_unreachable_kafka_is_named_when_casting_and_nothing_is_stored(seeded, streamlit_app):
    (voter, number), *_ = voters(seeded)
    no_broker = replace(seeded, kafka_bootstrap_servers=f"localhost:{free_ports(1)[0]}")
    app = cast(sign_in(ballot_page_of(streamlit_app(no_broker)), voter, number), next(iter(candidates(seeded))))
    [error] = texts(app.error)
    assert f"Kafka at {no_broker.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) is not reachable" in error
    assert "your vote was not cast" in error
    assert query(seeded, "SELECT count(*) FROM votes") == [(0,)]


# --- Sign-in throttling's policy, as pure functions of the failures. ---

def test_a_voter_id_waits_after_three_failures_twice_as_long_after_each_more_up_to_five_minutes():
    assert [wait_after(failures) for failures in range(1, 11)] == [0, 0, 5, 10, 20, 40, 80, 160, 300, 300]


def test_an_address_waits_only_after_thirty_failures_and_then_as_a_voter_id_does():
    assert [wait_after(failures, 30) for failures in (1, 29, 30, 31, 36, 37)] == [0, 0, 5, 10, 300, 300]


def test_the_database_looks_waits_up_in_a_table_that_ends_at_the_longest_wait():
    assert waits_by_failures(3) == [0, 0, 5, 10, 20, 40, 80, 160, 300]
    assert waits_by_failures(30) == [wait_after(failures, 30) for failures in range(1, 37)]


def test_the_table_of_waits_ends_even_when_the_waits_never_reach_the_longest(monkeypatch):
    monkeypatch.setattr(ballot_page, "FIRST_WAIT_S", 0.0)
    assert waits_by_failures(3) == [0.0] * (3 + 64)


@pytest.mark.parametrize(("address", "throttled"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),  # a guesser has the whole /64
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on an IPv6 socket
])
def test_a_client_address_is_throttled_by_what_one_subscriber_has(address, throttled):
    assert throttled_address(address) == throttled
