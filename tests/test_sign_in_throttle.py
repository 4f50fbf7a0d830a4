"""The ballot page's sign-in throttle holds across browser sessions: its failures are kept in PostgreSQL
(``sign_in_failures``), per voter ID as typed and per client address, not in ``st.session_state``. Each session
here is a new ``AppTest``, as a new tab or a script opening the websocket again would be; the client address, which
AppTest cannot set, is given to the page's back end (``ballot_page.sign_in``) directly."""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from realtime_voting.core import waiting
from realtime_voting.core.settings import Settings
from realtime_voting.services.db import query
from realtime_voting.web import ballot_page
from realtime_voting.web.ballot_page import FAILURES_BEFORE_WAITING, FIRST_WAIT_S, NO_MATCH
from tests.support.ballot_page import ballot_page_of, sign_in, signed_in, texts, voters
from tests.support.stages import seed

TOO_MANY = re.compile(r"Too many attempts: try again in (\d+) s\.")


@pytest.fixture
def seeded(election: Settings) -> Settings:
    """An election of 2 voters and 2 candidates, nobody has voted."""
    seed(election, "--voters", "2", "--candidates", "2")
    return election


@pytest.fixture
def long_waits(monkeypatch: pytest.MonkeyPatch) -> float:
    """A first wait that no slow run of a test outlasts."""
    monkeypatch.setattr(ballot_page, "FIRST_WAIT_S", 60.0)
    return 60.0


def in_a_fresh_session(streamlit_app, election: Settings, voter_id: str, registration_number: str) -> list[str]:
    """Sign in from a new browser session; what the page says (its errors), and whether the voter got in."""
    app = sign_in(ballot_page_of(streamlit_app(election)), voter_id, registration_number)
    return [*texts(app.error), *(["signed in"] if signed_in(app) else [])]


def failures_of(election: Settings) -> dict[str, int]:
    return dict(query(election, "SELECT subject, failures FROM sign_in_failures WHERE throttled = 'voter_id'"))


def test_failures_in_one_session_lock_the_voter_id_in_a_fresh_session_even_for_the_right_number(
        seeded, streamlit_app, long_waits):
    (voter, number), *_ = voters(seeded)
    first = ballot_page_of(streamlit_app(seeded))
    for _ in range(FAILURES_BEFORE_WAITING):
        sign_in(first, voter, "not-" + number)
    assert texts(first.error) == [NO_MATCH, "Too many attempts: try again in 60 s."]

    [refused] = in_a_fresh_session(streamlit_app, seeded, voter, number)
    assert TOO_MANY.fullmatch(refused)  # no NO_MATCH and no ballot: nothing was checked
    # Nor does another server process start afresh: the page's back end, outside any session, is refused too.
    attempt = ballot_page.sign_in(seeded, voter, number)
    assert not attempt.checked and attempt.elector is None and 0 < attempt.wait_s <= long_waits
    assert failures_of(seeded) == {voter: FAILURES_BEFORE_WAITING}  # refused attempts are not counted


def test_an_unregistered_voter_id_is_locked_exactly_as_a_registered_one(seeded, streamlit_app, long_waits):
    (voter, number), *_ = voters(seeded)
    unregistered = str(uuid.uuid4())

    def what_the_page_says(voter_id: str) -> list[list[str]]:
        said = [in_a_fresh_session(streamlit_app, seeded, voter_id, "not-" + number)
                for _ in range(FAILURES_BEFORE_WAITING + 1)]
        return [[TOO_MANY.sub("Too many attempts: try again in N s.", text) for text in page] for page in said]

    registered_said = what_the_page_says(voter)
    assert registered_said == what_the_page_says(unregistered)
    assert registered_said == [[NO_MATCH]] * (FAILURES_BEFORE_WAITING - 1) + [
        [NO_MATCH, "Too many attempts: try again in N s."], ["Too many attempts: try again in N s."]]
    assert failures_of(seeded) == {voter: FAILURES_BEFORE_WAITING, unregistered: FAILURES_BEFORE_WAITING}


def test_the_right_number_signs_in_once_the_wait_has_passed_and_the_failures_start_again(seeded, streamlit_app):
    (voter, number), *_ = voters(seeded)
    for _ in range(FAILURES_BEFORE_WAITING - 1):
        in_a_fresh_session(streamlit_app, seeded, voter, "not-" + number)
    before_the_lock = time.monotonic()
    assert TOO_MANY.search(in_a_fresh_session(streamlit_app, seeded, voter, "not-" + number)[-1])

    waiting.until(lambda: "signed in" in in_a_fresh_session(streamlit_app, seeded, voter, number),
                  timeout_s=60, every_s=0.5, what=f"{voter} signed in after the first wait")
    assert time.monotonic() - before_the_lock >= FIRST_WAIT_S  # and not before it had passed
    assert failures_of(seeded) == {}
    for _ in range(FAILURES_BEFORE_WAITING - 1):  # a clean slate: as many free failures as at first
        assert in_a_fresh_session(streamlit_app, seeded, voter, "not-" + number) == [NO_MATCH]


def test_parallel_attempts_at_one_voter_id_are_checked_one_by_one_and_none_slips_past_the_lock(seeded, long_waits):
    (voter, number), *_ = voters(seeded)
    parallel = 4 * FAILURES_BEFORE_WAITING
    start = threading.Barrier(parallel)

    def guess(_: int) -> ballot_page.SignIn:
        start.wait()
        return ballot_page.sign_in(seeded, voter, "not-" + number)

    with ThreadPoolExecutor(parallel) as pool:
        attempts = list(pool.map(guess, range(parallel)))
    assert sum(attempt.checked for attempt in attempts) == FAILURES_BEFORE_WAITING
    assert failures_of(seeded) == {voter: FAILURES_BEFORE_WAITING}


def test_parallel_failures_are_each_counted(seeded, monkeypatch):
    monkeypatch.setattr(ballot_page, "FAILURES_BEFORE_WAITING", 1000)  # none of them waits
    (voter, number), *_ = voters(seeded)
    parallel = 12
    start = threading.Barrier(parallel)

    def guess(_: int) -> ballot_page.SignIn:
        start.wait()
        return ballot_page.sign_in(seeded, voter, "not-" + number)

    with ThreadPoolExecutor(parallel) as pool:
        assert all(attempt.checked for attempt in pool.map(guess, range(parallel)))
    assert failures_of(seeded) == {voter: parallel}


ADDRESS, ANOTHER_ADDRESS = "203.0.113.7", "198.51.100.1"  # documentation addresses (RFC 5737)


def fail_from(election: Settings, address: str, times: int) -> list[ballot_page.SignIn]:
    """``times`` failures from ``address``, each with a voter ID of its own (so that no voter ID waits)."""
    return [ballot_page.sign_in(election, str(uuid.uuid4()), "not-a-number", address) for _ in range(times)]


def test_failures_from_one_address_lock_it_for_every_voter_id_and_no_other_address(seeded):
    (voter, number), *_ = voters(seeded)
    *free, locking = fail_from(seeded, ADDRESS, ballot_page.FAILURES_BEFORE_WAITING_PER_ADDRESS)
    assert all(attempt.checked and attempt.wait_s == 0 for attempt in free)
    assert locking.checked and locking.wait_s == FIRST_WAIT_S

    refused = ballot_page.sign_in(seeded, voter, number, ADDRESS)
    assert not refused.checked and refused.elector is None and refused.wait_s > 0
    assert ballot_page.sign_in(seeded, voter, number, ANOTHER_ADDRESS).elector is not None


def test_a_success_gives_back_its_own_failure_but_does_not_clear_the_address(seeded):
    (voter, number), *_ = voters(seeded)
    fail_from(seeded, ADDRESS, ballot_page.FAILURES_BEFORE_WAITING_PER_ADDRESS - 1)
    assert ballot_page.sign_in(seeded, voter, number, ADDRESS).elector is not None  # counted first, given back
    [last_free] = fail_from(seeded, ADDRESS, 1)
    assert last_free.checked and last_free.wait_s == FIRST_WAIT_S  # the address's failures were kept
