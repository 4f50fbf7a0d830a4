"""The local Kafka broker: Apache Kafka from Maven Central, one KRaft node that is broker and controller.

The jars are ``jvm/kafka-broker/pom.xml``'s, which ``make setup`` resolves into ``.local/jars/kafka`` (``KAFKA_HOME``
points at an installation instead); it runs on the machine's own ``java``, its storage formatted on first start.
Its configuration is data (``broker_properties``, ``log4j_properties``), written to ``.local/config`` at every start.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import NoReturn

from realtime_voting.core import waiting
from realtime_voting.core.settings import Settings
from realtime_voting.running import processes
from realtime_voting.running.local_stack import certificates
from realtime_voting.running.local_stack.service import (
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    LocalService,
    StackError,
    host_port,
    pid_alive,
    pid_in,
    port_is_open,
)
from realtime_voting.services import kafka_io

logger = logging.getLogger(__name__)

KAFKA_HEAP = ["-Xms256m", "-Xmx1g"]
EXTERNAL_PORT = 9094  # a served broker's listener for clients outside its network (the host), see serve
# The names the broker's certificate is issued for: this machine, and its service's name in docker-compose.yaml.
KAFKA_SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "kafka")

# What a single node changes from Kafka's defaults.
SINGLE_NODE = {
    # One node can only keep one copy of each internal topic.
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

# The broker's own log: warnings, and the server's start and stop.
LOG4J = {
    "status": "warn",
    "appender.file.name": "FILE",
    "appender.file.layout.type": "PatternLayout",
    "appender.file.layout.pattern": "[%d] %p %m (%c)%n",
    "rootLogger.level": "INFO",
    "rootLogger.appenderRef.file.ref": "FILE",
    "logger.kafka.name": "kafka",
    "logger.kafka.level": "WARN",
    "logger.server.name": "kafka.server.KafkaRaftServer",
    "logger.server.level": "INFO",
}


def log4j_properties(log_file: Path | None) -> dict[str, str]:
    """``LOG4J`` to a rolling ``log_file`` (three of 50 MB), or with None to the console (a container's log)."""
    if log_file is None:
        return {"appender.file.type": "Console", "appender.file.target": "SYSTEM_OUT", **LOG4J}
    return {
        "appender.file.type": "RollingFile",
        "appender.file.fileName": str(log_file),
        "appender.file.filePattern": f"{log_file}.%i",
        "appender.file.policies.type": "Policies",
        "appender.file.policies.size.type": "SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size": "50MB",
        "appender.file.strategy.type": "DefaultRolloverStrategy",
        "appender.file.strategy.max": "3",
        **LOG4J,
    }


def broker_properties(settings: Settings, listeners: dict[str, tuple[str, str]], data_dir: Path,
                      security: dict[str, str]) -> dict[str, str]:
    """The node's ``server.properties``: ``listeners`` (name -> (bind address, advertised address)) for the
    clients, a controller on loopback, and ``security`` (empty for PLAINTEXT)."""
    # The controller is this very process: only the broker part talks to it, so it listens on loopback only.
    controller = f"127.0.0.1:{settings.kafka_controller_port}"
    protocols = {"CONTROLLER": "SASL_PLAINTEXT" if security else "PLAINTEXT",
                 **dict.fromkeys(listeners, "SASL_SSL" if security else "PLAINTEXT")}
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "listeners": ",".join([*(f"{name}://{bind}" for name, (bind, _) in listeners.items()),
                               f"CONTROLLER://{controller}"]),
        "advertised.listeners": ",".join(f"{name}://{address}" for name, (_, address) in listeners.items()),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "CLIENTS",
        "listener.security.protocol.map": ",".join(f"{name}:{protocol}" for name, protocol in protocols.items()),
        **security,
        "log.dirs": str(data_dir),
        **SINGLE_NODE,
    }


def sasl_ssl_properties(settings: Settings, listeners: list[str], keystore: Path) -> dict[str, str]:
    """SASL over TLS on the client ``listeners``, SASL on the controller's (loopback only), and ACLs.

    The admin (``KAFKA_ADMIN_USER``) is the broker's own account and a super user: its password is checked against
    this file (SASL PLAIN), so it works before any other user exists; the broker itself logs in as it, to its
    controller and to its own listener. The stages log in as SCRAM users, which ``kafka_security.grant`` makes as
    the admin, and the ACLs it creates say what each may do: the authorizer allows nothing else. The TLS
    certificate (``keystore``) is issued by the stack's own authority for every name the broker is reached by.
    """
    user, password = settings.kafka_credentials(kafka_io.ADMIN)
    quoted = kafka_io.jaas_quoted
    plain = (f"org.apache.kafka.common.security.plain.PlainLoginModule required username={quoted(user)} "
             f"password={quoted(password)} user_{user}={quoted(password)};")
    scram = settings.kafka_sasl_mechanism.upper()
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
        "ssl.keystore.location": str(keystore),
        # The broker is its own client (inter-broker): it trusts the authority that signed its certificate.
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certificates.authority_certificate_file(settings.tls_dir)),
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


def write_properties(path: Path, properties: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))


class KafkaBroker(LocalService):
    """A single-node KRaft broker+controller on ``settings.kafka_bootstrap_servers`` (localhost only)."""

    name = "kafka"
    title = "Kafka broker"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.logs_dir / "kafka.log")
        self.host, self.port = host_port(settings.kafka_bootstrap_servers.split(",")[0])
        self.data_dir = settings.state_dir / "data" / "kafka"
        self.config_file = settings.state_dir / "config" / "kafka.properties"
        self.log4j_file = settings.state_dir / "config" / "kafka-log4j2.properties"
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
        return pid_in(self.pid_file)

    def is_running(self) -> bool:
        return self.pid() is not None and port_is_open(self.host, self.port)

    def is_ready(self) -> bool:
        try:
            kafka_io.wait_for_kafka(self.settings, kafka_io.ADMIN, timeout_s=1.0)
            return True
        except kafka_io.KafkaUnavailable:
            return False

    def how_clients_connect(self) -> str:
        if not self.settings.kafka_secured:
            return "PLAINTEXT: no authentication"
        return (f"SASL_SSL with ACLs, CA {certificates.authority_certificate_file(self.settings.tls_dir)}, "
                f"admin {self.settings.kafka_admin_user!r}")

    def _write_config(self, external: str | None = None) -> None:
        """The broker's configuration. Served (``external`` given): it listens on every interface, on the port of
        ``KAFKA_BOOTSTRAP_SERVERS`` by that name, and on ``EXTERNAL_PORT`` as ``external`` (the host's address),
        and logs to the console. With ``KAFKA_SECURITY_PROTOCOL=SASL_SSL``, every listener also asks who the client
        is (``sasl_ssl_properties``)."""
        listeners = {"CLIENTS": (self.address, self.address)}
        if external is not None:
            listeners = {"CLIENTS": (f"0.0.0.0:{self.port}", self.address),
                         "EXTERNAL": (f"0.0.0.0:{EXTERNAL_PORT}", external)}
        security = sasl_ssl_properties(self.settings, [*listeners], self._keystore()) if (
            self.settings.kafka_secured) else {}
        write_properties(self.config_file, broker_properties(self.settings, listeners, self.data_dir, security))
        write_properties(self.log4j_file, log4j_properties(None if external is not None else self.log_file))

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
        result = processes.run_program(self._java("kafka.tools.StorageTool", "format", "--standalone", "-t",
                                                  cluster_id, "-c", str(self.config_file), "--ignore-formatted"))
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage in {self.data_dir} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> str:
        if self.pid() and self.is_ready():
            return f"Kafka is already running on {self.address}, {self.how_clients_connect()} (pid {self.pid()})"
        self.check_startable(self.host, "KAFKA_BOOTSTRAP_SERVERS", {
            self.port: "KAFKA_BOOTSTRAP_SERVERS", self.settings.kafka_controller_port: "KAFKA_CONTROLLER_PORT"})
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage_once()
        # Its own session: it survives the `make up` that started it, and Ctrl-C there does not reach it.
        process = processes.start_program(self._java("kafka.Kafka", str(self.config_file)), log=self.stdout_file,
                                          own_session=True)
        self.pid_file.write_text(str(process.pid))
        if not self._became_ready(process):
            self.stop()
            raise self.failed(f"Kafka did not start on {self.address} within {STARTUP_TIMEOUT_S:.0f}s",
                              self.log_file, self.stdout_file)
        return (f"Kafka started on {self.address}, {self.how_clients_connect()} (pid {process.pid}, "
                f"log {self.log_file})")

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
        self._write_config(external)
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
            waiting.until(lambda: not pid_alive(pid), timeout_s=STOP_TIMEOUT_S, what=f"Kafka (pid {pid}) to stop")
        except waiting.TimedOut:
            logger.warning("Kafka (pid %d) did not stop within %.0fs; killing it", pid, STOP_TIMEOUT_S)
            os.kill(pid, signal.SIGKILL)
            waiting.until(lambda: not pid_alive(pid), timeout_s=5, what=f"Kafka (pid {pid}) to end after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return f"Kafka stopped (pid {pid})"
