"""The PostgreSQL layer: connections and readiness. Every statement elsewhere is parameterised."""

from __future__ import annotations

import logging
import time

import psycopg2
import psycopg2.extensions

from realtime_voting.settings import Settings

logger = logging.getLogger(__name__)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL did not accept a connection in time; the message says where it was looked for."""


def connect(
    settings: Settings, *, dbname: str | None = None, connect_timeout: int = 5
) -> psycopg2.extensions.connection:
    """Open a connection to ``settings``' database (or ``dbname`` on the same server) over TCP."""
    return psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        dbname=dbname or settings.postgres_db,
        user=settings.postgres_user,
        password=settings.postgres_password,
        connect_timeout=connect_timeout,
        application_name="realtime-voting",
    )


def wait_for_postgres(
    settings: Settings, *, timeout_s: float = 30.0, dbname: str | None = None, hint: str = ""
) -> None:
    """Return once a connection succeeds; raise ``PostgresUnavailable`` after ``timeout_s`` seconds of trying."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            connect(settings, dbname=dbname, connect_timeout=2).close()
            return
        except psycopg2.OperationalError as error:
            last_error = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        if time.monotonic() >= deadline:
            raise PostgresUnavailable(
                f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} "
                f"(database {dbname or settings.postgres_db!r}) is not reachable after {attempt} attempts: "
                f"{last_error}. {hint or 'Is `make up` running? See `make status`.'}"
            )
        logger.debug("waiting for PostgreSQL (attempt %d): %s", attempt, last_error)
        time.sleep(0.25)  # a retry interval, not synchronisation: the loop ends on success or the deadline
