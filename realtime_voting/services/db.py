"""The PostgreSQL layer: connections, readiness, the election's tables and the queries on them.

Every statement is parameterised (values as parameters, names through ``psycopg2.sql.Identifier``).
Votes are written by ``realtime_voting.voting.ballot_box``, which owns the exactly-once rule.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import NamedTuple

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extras import execute_values

from realtime_voting.core import waiting
from realtime_voting.core.schemas import Candidate, Voter, as_row, field_names
from realtime_voting.core.settings import Settings

logger = logging.getLogger(__name__)

UndefinedTable = psycopg2.errors.UndefinedTable  # the election's tables do not exist yet


class PostgresUnavailable(RuntimeError):
    """PostgreSQL did not accept a connection in time; the message says where, and which variables say so."""


def connect(
    settings: Settings, *, dbname: str | None = None, connect_timeout: int = 5
) -> psycopg2.extensions.connection:
    """Open a connection to ``settings``' database (or ``dbname`` on the same server) over TCP, with TLS as
    POSTGRES_SSLMODE asks. Every connection of the project is opened here."""
    # Empty: not passed at all, so that libpq looks where it always does (~/.postgresql/root.crt).
    trusted = {"sslrootcert": settings.postgres_sslrootcert} if settings.postgres_sslrootcert else {}
    return psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        dbname=dbname or settings.postgres_db,
        user=settings.postgres_user,
        password=settings.postgres_password,
        connect_timeout=connect_timeout,
        application_name="realtime-voting",
        # Unqualified table names resolve in the election's schema (``public`` unless POSTGRES_SCHEMA says).
        options=f"-c search_path={settings.postgres_schema}",
        sslmode=settings.postgres_sslmode,
        **trusted,
    )


@contextmanager
def connected(settings: Settings, **options) -> Iterator[psycopg2.extensions.connection]:
    """A connection closed on exit, whatever happens. (psycopg2's own ``with connection:`` ends a transaction
    and leaves the connection open; use both: ``with db.connected(s) as c, c:`` for one transaction.)"""
    connection = connect(settings, **options)
    try:
        yield connection
    finally:
        connection.close()


def query(settings: Settings, statement: str | sql.Composable, params: Sequence | dict = ()) -> list[tuple]:
    """Run one statement in a transaction of a connection of its own; return its rows (none for a statement
    that returns none)."""
    with connected(settings) as connection, connection, connection.cursor() as cursor:
        # No parameters: None, so that psycopg2 leaves a literal % in the statement (LIKE 'x%') as it is.
        cursor.execute(statement, params or None)
        return cursor.fetchall() if cursor.description is not None else []


def first_line(error: Exception) -> str:
    """The first line of a driver error (libpq's messages run on with hints), or its type when it says nothing."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def wait_for_postgres(
    settings: Settings, *, timeout_s: float = 30.0, dbname: str | None = None, hint: str = ""
) -> None:
    """Return once a connection succeeds; raise ``PostgresUnavailable`` after ``timeout_s`` seconds of trying."""
    attempts: list[str] = []  # the error of each failed attempt, for the log and the final message

    def accepts_a_connection() -> bool:
        try:
            connect(settings, dbname=dbname, connect_timeout=2).close()
            return True
        except psycopg2.OperationalError as error:
            attempts.append(first_line(error))
            logger.debug("waiting for PostgreSQL (attempt %d): %s", len(attempts), attempts[-1])
            return False

    try:
        waiting.until(accepts_a_connection, timeout_s=timeout_s, every_s=0.25,
                      what=f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port}")
    except waiting.TimedOut:
        raise PostgresUnavailable(
            f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} (POSTGRES_HOST/POSTGRES_PORT), "
            f"database {dbname or settings.postgres_db!r}, is not reachable after {len(attempts)} attempts: "
            f"{attempts[-1]}. {hint or 'Is `make up` running? See `make status`.'}"
        ) from None


def unreachable(settings: Settings, error: Exception) -> PostgresUnavailable:
    """What a page says when PostgreSQL cannot be reached: where it was looked for, and the settings that say so."""
    return PostgresUnavailable(f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} "
                               f"(POSTGRES_HOST/POSTGRES_PORT) is not reachable: {first_line(error)}")


@contextmanager
def short_lived_connection(settings: Settings, *, connect_timeout: int = 3) -> Iterator[psycopg2.extensions.connection]:
    """A connection of the caller's own, closed on exit: for code that serves users from many threads (the
    ballot page), since a psycopg2 connection must not serve two threads at once. Raises
    ``PostgresUnavailable`` (see ``unreachable``) when no connection can be opened or it is lost."""
    try:
        with connected(settings, connect_timeout=connect_timeout) as connection:
            yield connection
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
        raise unreachable(settings, error) from error


# The election's tables. Types are proper where it costs nothing in compatibility with the reference
# (dates as date, times as timestamptz); ids stay text, as RandomUser's uuids and the reference's VARCHARs are.
SCHEMA_DDL = """
CREATE TABLE IF NOT EXISTS candidates (
    candidate_id      text PRIMARY KEY,
    candidate_name    text NOT NULL,
    party_affiliation text NOT NULL,
    biography         text,
    campaign_platform text,
    photo_url         text
);
CREATE TABLE IF NOT EXISTS voters (
    voter_id            text PRIMARY KEY,
    voter_name          text NOT NULL,
    date_of_birth       date,
    gender              text,
    nationality         text,
    registration_number text,
    address_street      text,
    address_city        text,
    address_state       text,
    address_country     text,
    address_postcode    text,
    email               text,
    phone_number        text,
    cell_number         text,
    picture             text,
    registered_age      integer
);
-- One vote per voter: the primary key on voter_id is the arbiter of "exactly once". Every writer inserts
-- with ON CONFLICT (voter_id) DO NOTHING, so a replayed or re-published voter can never vote twice.
CREATE TABLE IF NOT EXISTS votes (
    voter_id     text PRIMARY KEY REFERENCES voters (voter_id),
    candidate_id text NOT NULL REFERENCES candidates (candidate_id),
    voting_time  timestamptz NOT NULL DEFAULT now(),
    vote         integer NOT NULL DEFAULT 1 CHECK (vote = 1)
);
-- The dashboard's queries: votes per candidate, turnout by state, and the ballot page's log-in.
CREATE INDEX IF NOT EXISTS votes_candidate_id_idx ON votes (candidate_id);
CREATE INDEX IF NOT EXISTS voters_address_state_idx ON voters (address_state);
CREATE INDEX IF NOT EXISTS voters_registration_number_idx ON voters (registration_number);
-- The ballot page's sign-in throttle: failed sign-ins per voter ID as typed and per client address, kept here so
-- that a new browser session, another server process or a restart starts from them. A voter ID is a row whether
-- or not it is registered (no foreign key): the table never tells whether an ID exists.
CREATE TABLE IF NOT EXISTS sign_in_failures (
    throttled    text NOT NULL CHECK (throttled IN ('voter_id', 'client_address')),
    subject      text NOT NULL,
    failures     integer NOT NULL CHECK (failures >= 0),
    locked_until timestamptz NOT NULL,
    PRIMARY KEY (throttled, subject)
);
"""

ELECTION_TABLES = ("sign_in_failures", "votes", "voters", "candidates")  # in the order they can be dropped


def create_schema(connection: psycopg2.extensions.connection, schema: str) -> None:
    """Create the PostgreSQL schema (``POSTGRES_SCHEMA``), the election's tables and indexes if they do not exist
    (safe to run any number of times)."""
    with connection, connection.cursor() as cursor:
        # Concurrent seeders would race on CREATE ... IF NOT EXISTS; one lock makes them take turns.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('realtime_voting.create_schema'))")
        cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cursor.execute(SCHEMA_DDL)


def drop_schema(connection: psycopg2.extensions.connection) -> None:
    with connection, connection.cursor() as cursor:
        for table in ELECTION_TABLES:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))


def insert_candidates(connection: psycopg2.extensions.connection, candidates: Sequence[Candidate]) -> int:
    """Insert the candidates that are not registered yet; return how many were new."""
    columns = field_names(Candidate)
    with connection, connection.cursor() as cursor:
        rows = execute_values(
            cursor,
            sql.SQL("INSERT INTO candidates ({}) VALUES %s ON CONFLICT (candidate_id) DO NOTHING RETURNING 1")
            .format(sql.SQL(", ").join(map(sql.Identifier, columns))).as_string(cursor),
            [as_row(candidate) for candidate in candidates],
            fetch=True,
        )
    return len(rows)


def insert_voters(connection: psycopg2.extensions.connection, voters: Sequence[Voter]) -> list[Voter]:
    """Register a batch of voters with COPY; return the ones that were new (already registered ones are skipped).

    A batch of new voters (a fresh election, a top-up) is copied straight into ``voters``: one pass, the cheapest
    way PostgreSQL takes rows. A batch naming anyone registered already fails that COPY on the primary key (and
    rolls back whole); it is then copied into a temporary table and inserted with ON CONFLICT DO NOTHING, which
    keeps re-runs from duplicating anyone.
    """
    rows = io.StringIO()
    csv.writer(rows).writerows(map(as_row, voters))
    column_list = sql.SQL(", ").join(map(sql.Identifier, field_names(Voter)))
    copy = sql.SQL("COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)")
    try:
        rows.seek(0)
        with connection, connection.cursor() as cursor:
            cursor.copy_expert(copy.format(table=sql.Identifier("voters"), columns=column_list).as_string(cursor),
                               rows)
        return list(voters)
    except psycopg2.errors.UniqueViolation:
        pass  # someone in the batch is registered already: the batch again, through the staging table
    rows.seek(0)
    with connection, connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS voters_staging (LIKE voters) ON COMMIT DELETE ROWS")
        cursor.copy_expert(
            copy.format(table=sql.Identifier("voters_staging"), columns=column_list).as_string(cursor), rows)
        cursor.execute(
            sql.SQL("INSERT INTO voters ({cols}) SELECT {cols} FROM voters_staging "
                    "ON CONFLICT (voter_id) DO NOTHING RETURNING voter_id").format(cols=column_list)
        )
        new_ids = {row[0] for row in cursor.fetchall()}
    return [voter for voter in voters if voter.voter_id in new_ids]


def count_rows(connection: psycopg2.extensions.connection, table: str) -> int:
    with connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        return cursor.fetchone()[0]


def fetch_candidates(connection: psycopg2.extensions.connection) -> list[Candidate]:
    columns = field_names(Candidate)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT {} FROM candidates ORDER BY candidate_id")
            .format(sql.SQL(", ").join(map(sql.Identifier, columns)))
        )
        return [Candidate(*row) for row in cursor.fetchall()]


def wait_for_candidates(settings: Settings, stop: threading.Event, *, every_s: float = 1.0) -> list[Candidate] | None:
    """The election's candidates, once there are any; ``None`` if ``stop`` is set first.

    A stage started before ``main.py`` finds no tables or no candidates yet: it says so once and asks again
    every ``every_s`` seconds, for as long as it takes (a user may start the stages in any order).
    """
    announced = False

    def standing() -> list[Candidate]:
        nonlocal announced
        try:
            candidates = fetch_candidates(connection)
        except UndefinedTable:
            candidates = []
        if not candidates and not announced:
            logger.info("no candidates yet: waiting for `python main.py` to seed the election")
            announced = True
        return candidates

    with connected(settings) as connection:
        candidates = waiting.until(standing, timeout_s=math.inf, what="candidates in PostgreSQL", every_s=every_s,
                                   stop=stop)
    return candidates or None


def fetch_voters_without_vote(connection: psycopg2.extensions.connection, batch_size: int = 5000) -> Iterator[Voter]:
    """Every registered voter who has not voted yet, streamed with a server-side cursor."""
    columns = field_names(Voter)
    with connection, connection.cursor(name="voters_without_vote") as cursor:
        cursor.itersize = batch_size
        cursor.execute(
            sql.SQL("SELECT {} FROM voters v WHERE NOT EXISTS (SELECT 1 FROM votes WHERE voter_id = v.voter_id) "
                    "ORDER BY voter_id")
            .format(sql.SQL(", ").join(sql.SQL("v.") + sql.Identifier(column) for column in columns))
        )
        for row in cursor:
            yield Voter(*row)


def find_voter(connection: psycopg2.extensions.connection, voter_id: str,
               registration_number: str) -> tuple[str, str, datetime | None] | None:
    """``(voter_id, voter_name, time of their stored vote or None)`` of the registered voter with *both* this
    voter_id and this registration_number, or None: the same answer whichever of the two is wrong, so that it
    never tells which."""
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT voter_id, voter_name, votes.voting_time FROM voters LEFT JOIN votes USING (voter_id) "
                       "WHERE voter_id = %s AND registration_number = %s", (voter_id, registration_number))
        return cursor.fetchone()


# --- The ballot page's sign-in throttle (``sign_in_failures``; the policy is ``ballot_page``'s). ---

class SignInClaim(NamedTuple):
    """``claim_sign_in_attempt``'s answer."""

    granted: bool  # the credentials may be checked now
    wait_s: float  # granted: the wait that stands if they do not match (0: none); refused: the wait still to go


# Count one more failure unless the subject is locked; the wait after it is looked up in the policy's table of
# waits by failure count (its last entry stands for every further failure). One statement: concurrent attempts
# each add one, in turn, because ON CONFLICT locks the row. No row back: locked, nothing counted. Whether the lock
# has passed is asked of the clock (clock_timestamp()), not of now(): an attempt that waited for the row began its
# transaction before the one that set the lock did.
CLAIM_SIGN_IN_ATTEMPT = """
INSERT INTO sign_in_failures AS f (throttled, subject, failures, locked_until)
VALUES (%(throttled)s, %(subject)s, 1, now() + make_interval(secs => (%(waits)s::float8[])[1]))
ON CONFLICT (throttled, subject) DO UPDATE
SET failures = f.failures + 1,
    locked_until = now() + make_interval(
        secs => (%(waits)s::float8[])[least(f.failures + 1, cardinality(%(waits)s::float8[]))])
WHERE f.locked_until <= clock_timestamp()
RETURNING greatest(extract(epoch FROM locked_until - now()), 0)
"""
SECONDS_LOCKED = ("SELECT greatest(extract(epoch FROM locked_until - clock_timestamp()), 0) FROM sign_in_failures "
                  "WHERE throttled = %(throttled)s AND subject = %(subject)s")


def claim_sign_in_attempt(connection: psycopg2.extensions.connection, voter_id: str,
                          voter_id_waits: Sequence[float], client_address: str | None,
                          client_address_waits: Sequence[float]) -> SignInClaim:
    """Count a sign-in attempt as a failure of ``voter_id`` (as typed) and of ``client_address`` (if known)
    *before* its credentials are checked, so that attempts sent in parallel cannot slip through together: each
    is counted in turn, and those beyond the allowance find the subject locked. A success gives its failure back
    (``sign_in_succeeded``).

    ``*_waits`` are the seconds to wait after the 1st, 2nd, ... failure in a row (the last one for any further).
    Refused (``granted`` False) while the voter ID or the address is locked, and then nothing is counted against
    either. (The address is claimed first, in every transaction, so that two attempts never wait for each other's
    rows in opposite orders.)"""
    claims = [("voter_id", voter_id, voter_id_waits)]
    if client_address is not None:
        claims.insert(0, ("client_address", client_address, client_address_waits))
    waits = []
    with connection, connection.cursor() as cursor:
        for throttled, subject, waits_by_failures in claims:
            subject_params = {"throttled": throttled, "subject": subject}
            cursor.execute(CLAIM_SIGN_IN_ATTEMPT, {**subject_params, "waits": list(waits_by_failures)})
            claimed = cursor.fetchone()
            if claimed is None:
                cursor.execute(SECONDS_LOCKED, subject_params)
                [locked_for] = cursor.fetchone()
                connection.rollback()  # a refused attempt counts against neither
                return SignInClaim(False, float(locked_for))
            waits.append(float(claimed[0]))
    return SignInClaim(True, max(waits))


def sign_in_succeeded(connection: psycopg2.extensions.connection, voter_id: str, client_address: str | None) -> None:
    """After a successful sign-in: the voter ID's failures start again from zero, and the address gets back the
    failure ``claim_sign_in_attempt`` counted, with no lock of its own (an address keeps its other failures: one
    registered voter's success must not clear the way for guesses at every other voter ID)."""
    with connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM sign_in_failures WHERE throttled = 'voter_id' AND subject = %s", (voter_id,))
        if client_address is not None:
            cursor.execute("UPDATE sign_in_failures SET failures = failures - 1, locked_until = least(locked_until, "
                           "now()) WHERE throttled = 'client_address' AND subject = %s AND failures > 0",
                           (client_address,))
