"""``db.connect``, the one place the project opens a PostgreSQL connection, gives libpq the TLS settings (what the
server then does with them: tests/test_postgres_tls.py). No service needed."""

from __future__ import annotations

import psycopg2

from realtime_voting.core.settings import Settings
from realtime_voting.services import db


def options_of_a_connection(monkeypatch, environ: dict[str, str]) -> dict[str, object]:
    """The options ``db.connect`` hands psycopg2 for the settings of ``environ``."""
    handed: dict[str, object] = {}
    monkeypatch.setattr(psycopg2, "connect", lambda **options: handed.update(options))
    db.connect(Settings.from_env(environ))
    return handed


def test_every_connection_asks_for_tls_as_postgres_sslmode_and_sslrootcert_say(monkeypatch):
    options = options_of_a_connection(
        monkeypatch, {"POSTGRES_SSLMODE": "verify-full", "POSTGRES_SSLROOTCERT": "/etc/voting/ca.pem"})
    assert (options["sslmode"], options["sslrootcert"]) == ("verify-full", "/etc/voting/ca.pem")


def test_by_default_libpq_prefers_tls_and_looks_for_its_ca_where_it_always_does(monkeypatch):
    options = options_of_a_connection(monkeypatch, {})
    assert options["sslmode"] == "prefer" and "sslrootcert" not in options
