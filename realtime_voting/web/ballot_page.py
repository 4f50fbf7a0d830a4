"""The "Cast your vote" page of the web app (``streamlit run streamlit_app.py``, then "Cast your vote").

A voter signs in with their voter ID and registration number, sees the candidates (photo, party, platform),
picks one and confirms. The ballot goes through ``BallotBox.cast``, the code ``voting.py`` uses: stored once in
``votes``, published to ``votes_topic``, and counted by the same Spark job, so it is on the results page within
seconds.

- Sign-in: both must match one row of ``voters`` (``ballot_box.identify``); any mismatch gets one message that
  does not say which was wrong. After ``FAILURES_BEFORE_WAITING`` failures in a row with one voter ID, that voter
  ID waits, longer after each further failure (``wait_after``); so does a client address after
  ``FAILURES_BEFORE_WAITING_PER_ADDRESS`` (where Streamlit knows it: ``st.context.ip_address``). The failures are
  kept in PostgreSQL (``db.claim_sign_in_attempt``), not in the browser session, so a new tab, another server
  process or a restart does not wipe them; while a voter ID or an address waits the page checks nothing, and an
  unregistered voter ID waits exactly as a registered one does.
- One vote per voter: a voter who has voted is told when, and gets no ballot. Two tabs submitting at the same
  instant store and publish one vote: the ``votes`` primary key decides (see ``ballot_box``).
- Resources: every sign-in and every cast opens a PostgreSQL connection of its own (a psycopg2 connection must
  never serve two sessions' threads at once); one Kafka producer per server process, which is thread-safe,
  publishes for every session.
- PostgreSQL or Kafka unreachable: the page names the service and its setting, and stores nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NoReturn

import streamlit as st
from confluent_kafka import KafkaException, Producer

from realtime_voting.core.schemas import Candidate
from realtime_voting.core.settings import Settings
from realtime_voting.services import db, kafka_io
from realtime_voting.voting.ballot_box import Ballot, BallotBox, CastResult, Elector, identify
from realtime_voting.web.dashboard import RESULTS_PAGE

logger = logging.getLogger(__name__)

NO_MATCH = ("This voter ID and registration number do not match a registered voter. Check both, as they are "
            "written on your registration.")
FAILURES_BEFORE_WAITING = 3  # failed sign-ins in a row with one voter ID before it has to wait
# ...and from one client address: many voters may share one (a polling station, an office behind a proxy).
FAILURES_BEFORE_WAITING_PER_ADDRESS = 30
FIRST_WAIT_S = 5.0  # the wait after that many failures; it doubles with every further failure...
LONGEST_WAIT_S = 300.0  # ...up to this
BROKER_CHECK_S = 5.0  # how long a voter waits for the broker to answer before casting...
PUBLISH_TIMEOUT_MS = 10_000  # ...and for it to acknowledge the vote, before being told it is unreachable

# What the page keeps in st.session_state, per browser session (the sign-in failures are in PostgreSQL).
ELECTOR = "ballot_elector"
CAST = "ballot_cast_result"


# --- Sign-in throttling: the policy as pure functions; the failures themselves are in PostgreSQL. ---

def wait_after(failures: int, free_failures: int = FAILURES_BEFORE_WAITING) -> float:
    """Seconds to wait after the ``failures``-th failed sign-in in a row: none before ``free_failures``, then
    ``FIRST_WAIT_S``, doubling with each further failure up to ``LONGEST_WAIT_S``."""
    if failures < free_failures:
        return 0.0
    return min(FIRST_WAIT_S * 2 ** (failures - free_failures), LONGEST_WAIT_S)


def waits_by_failures(free_failures: int) -> list[float]:
    """``wait_after(1)``, ``wait_after(2)``, ... up to the first that is ``LONGEST_WAIT_S``: the table that
    ``db.claim_sign_in_attempt`` looks the wait up in, in the same statement that counts the failure (its last
    entry stands for every further failure)."""
    waits = [wait_after(1, free_failures)]
    # Bounded, so that a policy whose waits never reach the longest (FIRST_WAIT_S = 0) still ends.
    while waits[-1] < LONGEST_WAIT_S and len(waits) < free_failures + 64:
        waits.append(wait_after(len(waits) + 1, free_failures))
    return waits


def throttled_address(ip_address: str) -> str:
    """What a client address is throttled by: an IPv4 address itself, an IPv6 address by its /64 network (what
    one subscriber gets: a guesser could otherwise take a fresh address for every guess)."""
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return ip_address  # not an IP address (a Unix socket's peer): as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# --- The page's back end: callable without a browser session (the tests call ``cast_vote`` directly). ---

def flush_producer(producer: Producer) -> None:
    producer.flush(10)  # votes are acknowledged before the page says so; this only lets go of the client


@st.cache_resource(show_spinner=False, on_release=flush_producer)
def vote_producer(settings: Settings) -> Producer:
    """One producer per server process (confluent_kafka's Producer is thread-safe), shared by every session."""
    return Producer(kafka_io.producer_config(settings, kafka_io.VOTING, **{"message.timeout.ms": PUBLISH_TIMEOUT_MS}))


@st.cache_data(ttl=30, show_spinner=False)
def standing_candidates(settings: Settings) -> list[Candidate]:
    with db.short_lived_connection(settings) as connection:
        return db.fetch_candidates(connection)


def kafka_unreachable(settings: Settings, detail: object) -> kafka_io.KafkaUnavailable:
    return kafka_io.KafkaUnavailable(
        f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) is not reachable: {detail}")


@dataclass(frozen=True)
class SignIn:
    """What one sign-in attempt came to."""

    elector: Elector | None  # the voter, when both credentials matched
    checked: bool  # False: refused unchecked, the voter ID or the client address was waiting
    wait_s: float  # how long this voter ID or address must now wait before it is checked again (0: not at all)


def sign_in(settings: Settings, voter_id: str, registration_number: str, client_address: str | None = None) -> SignIn:
    """Check a voter's credentials (see ``ballot_box.identify``) unless the voter ID or the client address has to
    wait: the attempt is counted as a failure of both first (``db.claim_sign_in_attempt``), and a success gives it
    back. The same whether or not the voter ID is registered. Raises ``db.PostgresUnavailable`` naming the server,
    or ``db.UndefinedTable`` before the election is seeded."""
    address = None if client_address is None else throttled_address(client_address)
    with db.short_lived_connection(settings) as connection:
        claim = db.claim_sign_in_attempt(
            connection, voter_id, waits_by_failures(FAILURES_BEFORE_WAITING),
            address, waits_by_failures(FAILURES_BEFORE_WAITING_PER_ADDRESS))
        if not claim.granted:
            return SignIn(None, checked=False, wait_s=claim.wait_s)
        elector = identify(connection, voter_id, registration_number)
        if elector is None:
            return SignIn(None, checked=True, wait_s=claim.wait_s)
        db.sign_in_succeeded(connection, voter_id, address)
        return SignIn(elector, checked=True, wait_s=0.0)


def cast_vote(settings: Settings, producer: Producer, voter_id: str, candidate_id: str) -> CastResult:
    """Cast one voter's ballot through ``BallotBox.cast`` (see there for what it guarantees), on a connection
    of its own. The result is rejected, and nothing stored, for a candidate who is not standing.

    Raises ``kafka_io.KafkaUnavailable`` before anything is stored when the broker does not answer, or if the vote was
    stored but not acknowledged (casting it again publishes the stored vote); ``db.PostgresUnavailable`` when
    PostgreSQL cannot be reached. Casting the same voter's ballot again is always safe.
    """
    try:
        producer.list_topics(timeout=BROKER_CHECK_S)  # not stored at all rather than stored unpublished
    except KafkaException as error:
        raise kafka_unreachable(settings, f"{error.args[0].str()}; your vote was not cast") from error
    try:
        with db.short_lived_connection(settings) as connection:
            [result] = BallotBox(settings, connection, producer).cast([Ballot(voter_id, candidate_id)])
    except kafka_io.PublishFailed as error:
        raise kafka_unreachable(settings, f"{error}; your vote is stored but not yet published") from error
    return result


def republish_vote(settings: Settings, producer: Producer, voter_id: str) -> bool:
    """Publish a voter's stored vote again (``BallotBox.republish``): a vote stored while the broker failed is
    counted once the voter signs in again. Best effort: False, and a warning in the log, if the broker is down."""
    try:
        producer.list_topics(timeout=BROKER_CHECK_S)
        with db.short_lived_connection(settings) as connection:
            return BallotBox(settings, connection, producer).republish([voter_id]) == 1
    except (KafkaException, kafka_io.PublishFailed, db.PostgresUnavailable) as error:
        logger.warning("the stored vote of %s was not republished: %s", voter_id, error)
        return False


# --- The page, top to bottom. ---

def utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%d %B %Y at %H:%M:%S} UTC"


def show_unavailable(error: Exception, what_now: str) -> None:
    st.error(f"{error}. {what_now} (`make status` shows the local stack.)")


def show_sign_in(settings: Settings) -> None:
    st.write("Sign in with your voter ID and your registration number.")
    with st.form("sign_in"):
        voter_id = st.text_input("Voter ID", key="sign_in_voter_id").strip()
        registration_number = st.text_input("Registration number", type="password",
                                            key="sign_in_registration_number").strip()
        submitted = st.form_submit_button("Sign in", type="primary", key="sign_in_submit")
    if submitted:
        check_sign_in(settings, voter_id, registration_number, client_address())


def client_address() -> str | None:
    """The browser's address as Streamlit reports it (``st.context.ip_address``), or None where there is none: a
    browser on the same machine, or a headless AppTest session (whose stand-in runtime answers with a mock, not a
    string). Without one, the voter ID alone is throttled."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def check_sign_in(settings: Settings, voter_id: str, registration_number: str, client_address: str | None) -> None:
    """Check a voter's credentials. When they match, the voter enters the ballot (``enter_ballot`` reruns the
    script: this call does not return). Otherwise the page says why: a mismatch, a wait (while the voter ID or the
    address waits nothing is checked, so a guesser learns nothing, not even from a right guess), a field left
    empty, PostgreSQL unreachable or no election yet."""
    if not voter_id or not registration_number:
        st.warning("Enter both your voter ID and your registration number.")
        return
    try:
        attempt = sign_in(settings, voter_id, registration_number, client_address)
    except db.PostgresUnavailable as error:
        show_unavailable(error, "Sign in again when it is back.")
        return
    except db.UndefinedTable:
        st.warning(f"There is no election in schema {settings.postgres_schema!r} of database "
                   f"{settings.postgres_db!r} yet (POSTGRES_SCHEMA, POSTGRES_DB): `python main.py` seeds one.")
        return
    if attempt.elector is not None:
        enter_ballot(settings, attempt.elector)
    if attempt.checked:
        st.error(NO_MATCH)
    if attempt.wait_s > 0 or not attempt.checked:
        st.error(f"Too many attempts: try again in {max(1, math.ceil(attempt.wait_s))} s.")


def enter_ballot(settings: Settings, elector: Elector) -> NoReturn:
    """Sign the voter in (a vote stored earlier is published again, in case the broker failed then), and rerun
    the script, which shows their ballot. Never returns."""
    st.session_state[ELECTOR] = elector
    if elector.voted_at is not None:
        republish_vote(settings, vote_producer(settings), elector.voter_id)
    st.rerun()


def sign_out() -> None:
    for key in (ELECTOR, CAST):
        st.session_state.pop(key, None)


def show_candidates(candidates: list[Candidate]) -> None:
    columns = st.columns(min(len(candidates), 3))
    for index, candidate in enumerate(candidates):
        with columns[index % len(columns)].container(border=True):
            if candidate.photo_url:
                st.image(candidate.photo_url, width=120)
            st.markdown(f"**{candidate.candidate_name}**  \n{candidate.party_affiliation}")
            if candidate.campaign_platform:
                st.caption(candidate.campaign_platform)


def show_cast(result: CastResult, chosen: str) -> None:
    """What became of the ballot; ``chosen`` is the candidate it named, as the ballot showed them."""
    vote = result.vote
    if result.already_voted:
        st.warning(f"You have already voted, on {utc(vote.voting_time)}. A voter votes once: this ballot was not "
                   "counted, your vote stands.")
        return
    st.success(f"Your vote for {chosen} was cast on "
               f"{utc(vote.voting_time)}. It appears on the results page within seconds.")
    st.page_link(RESULTS_PAGE, label="See the results", icon=":material/bar_chart:")


def show_ballot(settings: Settings, elector: Elector) -> None:
    st.write(f"Signed in as **{elector.voter_name}** (voter ID `{elector.voter_id}`).")
    st.button("Sign out", on_click=sign_out)
    if CAST in st.session_state:
        show_cast(*st.session_state[CAST])
        return
    if elector.voted_at is not None:
        st.info(f"You have already voted, on {utc(elector.voted_at)}. A voter votes once: your vote stands.")
        return
    try:
        candidates = standing_candidates(settings)
    except db.PostgresUnavailable as error:
        show_unavailable(error, "Reload the page when it is back.")
        return
    if not candidates:
        st.warning("No candidate is standing yet.")
        return
    show_candidates(candidates)
    names = {candidate.candidate_id: f"{candidate.candidate_name} ({candidate.party_affiliation})"
             for candidate in candidates}
    with st.form("ballot"):
        choice = st.radio("Your vote", list(names), index=None, format_func=names.get, key="ballot_choice")
        confirmed = st.checkbox("I confirm my choice. A vote cannot be changed once it is cast.",
                                key="ballot_confirmed")
        submitted = st.form_submit_button("Cast my vote", type="primary", key="ballot_submit")
    if not submitted:
        return
    if choice is None or not confirmed:
        st.warning("Pick a candidate, and tick the box to confirm your choice.")
        return
    try:
        result = cast_vote(settings, vote_producer(settings), elector.voter_id, choice)
    except (db.PostgresUnavailable, kafka_io.KafkaUnavailable) as error:
        show_unavailable(error, "Cast your vote again when it is back: it is stored once, however often you cast it.")
        return
    if not result.accepted:
        st.error(f"Your vote was not cast: {result.rejection}.")
        return
    st.session_state[CAST] = (result, names[choice])
    st.session_state[ELECTOR] = replace(elector, voted_at=result.vote.voting_time)
    st.rerun()


def render() -> None:
    settings = Settings.from_env()
    st.title("Cast your vote")
    elector: Elector | None = st.session_state.get(ELECTOR)
    if elector is None:
        show_sign_in(settings)
    else:
        show_ballot(settings, elector)
