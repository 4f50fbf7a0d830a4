"""The local Kafka nodes: Apache Kafka from Maven Central, each node a KRaft broker and controller.

One node by default; with ``KAFKA_NODES=3`` three, one quorum of controllers, every partition on three of them
(``broker_properties``): ``KafkaCluster`` starts and stops them together, ``KafkaBroker`` is one node.
The jars are ``jvm/kafka-broker/pom.xml``'s, which ``make setup`` resolves into ``.local/jars/kafka`` (``KAFKA_HOME``
points at an installation instead); each node runs on the machine's own ``java``, its storage formatted on first
start. Its configuration is data (``broker_properties``, ``log4j_properties``), written to ``.local/config`` at every
start.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import signal
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from realtime_voting.core import waiting
from realtime_voting.core.settings import (
    LOCAL_NODE_PORT_STEP,
    Settings,
    min_insync_replicas_for,
    replication_factor_for,
)
from realtime_voting.running import processes
from realtime_voting.running.local_stack import certificates
from realtime_voting.running.local_stack.service import (
    LOCAL_HOSTS,
    STARTUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    LocalService,
    ServiceStatus,
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
# The names the nodes' certificate is issued for besides every node's host in KAFKA_BOOTSTRAP_SERVERS: this machine.
KAFKA_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")

# What the local nodes change from Kafka's defaults, whatever their number.
LOCAL_DEFAULTS = {
    # New consumer groups start at once instead of waiting 3 s for more members.
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "1",
    "auto.create.topics.enable": "true",
}


# How soon the controllers fence a node that stopped heartbeating, and so move the leadership of its partitions:
# 5 s instead of Kafka's 9. A lost node that coordinated the voting group must be replaced before the voting
# stage's consumer session runs out (kafka_io.consumer_config: 10 s); at 9 s it ran out first, and the group's
# rebalance stopped the votes for 21.5 s (tests/test_broker_loss.py).
FAILOVER = {
    "broker.session.timeout.ms": "5000",
    "broker.heartbeat.interval.ms": "1000",
}


def replication_properties(nodes: int) -> dict[str, str]:
    """How many copies of each partition a cluster of ``nodes`` keeps, Kafka's internal topics too (the consumer
    groups' offsets, the transactions' state), and how many must have each write (``settings.py``)."""
    copies = replication_factor_for(nodes)
    in_sync = str(min_insync_replicas_for(copies))
    return {
        "default.replication.factor": str(copies),
        "min.insync.replicas": in_sync,
        "offsets.topic.replication.factor": str(copies),
        "transaction.state.log.replication.factor": str(copies),
        "transaction.state.log.min.isr": in_sync,
        "share.coordinator.state.topic.replication.factor": str(copies),
        "share.coordinator.state.topic.min.isr": in_sync,
    }


def controller_addresses(settings: Settings) -> list[str]:
    """Each node's controller, host:port: on its node's host (loopback for this machine), at
    ``KAFKA_CONTROLLER_PORT`` + 100 (n - 1) for node n."""
    hosts = ["127.0.0.1" if host in LOCAL_HOSTS else host
             for host, _ in map(host_port, kafka_addresses(settings))]
    return [f"{host}:{settings.kafka_controller_port + LOCAL_NODE_PORT_STEP * index}"
            for index, host in enumerate(hosts)]


def kafka_addresses(settings: Settings) -> list[str]:
    """The nodes' client addresses: the first ``KAFKA_NODES`` of ``KAFKA_BOOTSTRAP_SERVERS``."""
    addresses = [address.strip() for address in settings.kafka_bootstrap_servers.split(",") if address.strip()]
    if settings.kafka_nodes < 1 or len(addresses) < settings.kafka_nodes:
        raise StackError(
            f"KAFKA_NODES={settings.kafka_nodes} needs one address per node in KAFKA_BOOTSTRAP_SERVERS, which lists "
            f"{len(addresses)} ({settings.kafka_bootstrap_servers}); leave it unset for the local defaults")
    return addresses[:settings.kafka_nodes]


def cluster_id(seed: str) -> str:
    """A cluster id made from ``seed``: 16 bytes in URL-safe base64, as Kafka's own are. Several nodes seed it with
    their quorum's addresses, so that nodes formatted apart (one container each) agree; one node with a random
    value."""
    made = base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_URL, f"realtime-voting:{seed}").bytes).decode()
    return "A" + made[1:22] if made.startswith("-") else made[:22]  # Kafka's tools read "-..." as an option


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


def broker_properties(settings: Settings, node: int, listeners: dict[str, tuple[str, str]], data_dir: Path,
                      security: dict[str, str], *, served: bool = False) -> dict[str, str]:
    """Node ``node``'s ``server.properties``: ``listeners`` (name -> (bind address, advertised address)) for the
    clients, its controller, and ``security`` (empty for PLAINTEXT).

    One node is its own controller, on loopback (only its broker part talks to it). Several form one quorum of
    controllers, whose addresses every node knows (``controller.quorum.voters``); served in a container, a
    controller listens on every interface, as the other nodes are other hosts."""
    controllers = controller_addresses(settings)
    controller = controllers[node - 1]
    controller_bind = f"0.0.0.0:{host_port(controller)[1]}" if served and settings.kafka_nodes > 1 else controller
    if settings.kafka_nodes == 1:
        quorum = {"controller.quorum.bootstrap.servers": controller}
    else:
        quorum = {"controller.quorum.voters": ",".join(f"{number}@{address}"
                                                       for number, address in enumerate(controllers, start=1)),
                  **FAILOVER}
    # The controllers of several nodes talk over the network: TLS as the clients' listeners, when secured.
    controller_protocol = ("SASL_SSL" if settings.kafka_nodes > 1 else "SASL_PLAINTEXT") if security else "PLAINTEXT"
    protocols = {"CONTROLLER": controller_protocol,
                 **dict.fromkeys(listeners, "SASL_SSL" if security else "PLAINTEXT")}
    return {
        "process.roles": "broker,controller",
        "node.id": str(node),
        **quorum,
        "listeners": ",".join([*(f"{name}://{bind}" for name, (bind, _) in listeners.items()),
                               f"CONTROLLER://{controller_bind}"]),
        "advertised.listeners": ",".join(f"{name}://{address}" for name, (_, address) in listeners.items()),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "CLIENTS",
        "listener.security.protocol.map": ",".join(f"{name}:{protocol}" for name, protocol in protocols.items()),
        **security,
        "log.dirs": str(data_dir),
        **replication_properties(settings.kafka_nodes),
        **LOCAL_DEFAULTS,
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
    """Node ``node`` (from 1) of the local cluster, a KRaft broker and controller, on its address in
    ``KAFKA_BOOTSTRAP_SERVERS`` (localhost only). A single node's files are named ``kafka``, those of node n of
    several ``kafka-n``: the one-node and the three-node clusters keep their data apart."""

    title = "Kafka node"

    def __init__(self, settings: Settings, node: int = 1) -> None:
        self.node = node
        self.name = "kafka" if settings.kafka_nodes == 1 else f"kafka-{node}"
        self.label = "Kafka" if settings.kafka_nodes == 1 else f"Kafka node {node}"  # as a sentence names it
        super().__init__(settings, settings.logs_dir / f"{self.name}.log")
        self.host, self.port = host_port(kafka_addresses(settings)[node - 1])
        self.controller_port = host_port(controller_addresses(settings)[node - 1])[1]
        self.data_dir = settings.state_dir / "data" / self.name
        self.config_file = settings.state_dir / "config" / f"{self.name}.properties"
        self.log4j_file = settings.state_dir / "config" / f"{self.name}-log4j2.properties"
        self.stdout_file = settings.logs_dir / f"{self.name}.stdout.log"
        self.pid_file = settings.state_dir / "run" / f"{self.name}.pid"

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
        """Whether this node itself answers a metadata request (not another node of its cluster)."""
        try:
            kafka_io.wait_for_kafka(replace(self.settings, kafka_bootstrap_servers=self.address), kafka_io.ADMIN,
                                    timeout_s=1.0)
            return True
        except kafka_io.KafkaUnavailable:
            return False

    def how_clients_connect(self) -> str:
        if not self.settings.kafka_secured:
            return "PLAINTEXT: no authentication"
        return (f"SASL_SSL with ACLs, CA {certificates.authority_certificate_file(self.settings.tls_dir)}, "
                f"admin {self.settings.kafka_admin_user!r}")

    def _write_config(self, external: str | None = None) -> None:
        """The node's configuration. Served (``external`` given): it listens on every interface, on the port of
        its address in ``KAFKA_BOOTSTRAP_SERVERS``, and on ``EXTERNAL_PORT`` as ``external`` (the host's address),
        and logs to the console. With ``KAFKA_SECURITY_PROTOCOL=SASL_SSL``, every listener also asks who the client
        is (``sasl_ssl_properties``)."""
        listeners = {"CLIENTS": (self.address, self.address)}
        if external is not None:
            listeners = {"CLIENTS": (f"0.0.0.0:{self.port}", self.address),
                         "EXTERNAL": (f"0.0.0.0:{EXTERNAL_PORT}", external)}
        security = sasl_ssl_properties(self.settings, [*listeners], self._keystore()) if (
            self.settings.kafka_secured) else {}
        write_properties(self.config_file, broker_properties(self.settings, self.node, listeners, self.data_dir,
                                                             security, served=external is not None))
        write_properties(self.log4j_file, log4j_properties(None if external is not None else self.log_file))

    def _keystore(self) -> Path:
        """The nodes' TLS key and certificate, issued (again) when missing, stale or not naming every node's host:
        one for all the nodes, which trust each other through the authority that signed it."""
        authority = certificates.ensure_authority(self.settings.tls_dir)
        hosts = [host_port(address)[0] for address in kafka_addresses(self.settings)]
        names = dict.fromkeys([*KAFKA_SERVER_NAMES, *hosts])
        certificate, key = self.settings.tls_dir / "kafka.pem", self.settings.tls_dir / "kafka-key.pem"
        keystore = self.settings.tls_dir / "kafka-keystore.pem"
        with certificates.locked(self.settings.tls_dir):  # the nodes of a compose stack share the folder
            certificates.ensure_server_certificate(authority, names, certificate, key)
            certificates.write_replacing(keystore, key.read_bytes() + certificate.read_bytes(), certificates.PRIVATE)
        return keystore

    def java_command(self, main_class: str, *args: str) -> list[str]:
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
        if self.settings.kafka_nodes == 1:
            new_id = cluster_id(uuid.uuid4().hex)
            how = ["-t", new_id, "--standalone"]  # the one controller of its quorum
        else:
            new_id = cluster_id(",".join(controller_addresses(self.settings)))
            how = ["-t", new_id]  # the quorum is the configuration's controller.quorum.voters
        logger.info("formatting Kafka storage in %s (cluster id %s)", self.data_dir, new_id)
        result = processes.run_program(self.java_command("kafka.tools.StorageTool", "format", *how,
                                                  "-c", str(self.config_file), "--ignore-formatted"))
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage in {self.data_dir} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> str:
        if self.pid() and self.is_ready():
            return f"{self.label} is already running on {self.address}, {self.how_clients_connect()} (pid {self.pid()})"
        process = self.launch()
        if not self.became_ready(process):
            self.stop()
            raise self.start_failed()
        return self.started_line(process.pid)

    def launch(self) -> subprocess.Popen:
        """Start the node's process without waiting for it to answer: a node of several answers only once a
        majority of the controllers runs."""
        self.check_startable(self.host, "KAFKA_BOOTSTRAP_SERVERS", {
            self.port: "KAFKA_BOOTSTRAP_SERVERS", self.controller_port: "KAFKA_CONTROLLER_PORT"})
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage_once()
        # Its own session: it survives the `make up` that started it, and Ctrl-C there does not reach it.
        process = processes.start_program(self.java_command("kafka.Kafka", str(self.config_file)), log=self.stdout_file,
                                          own_session=True)
        self.pid_file.write_text(str(process.pid))
        return process

    def start_failed(self) -> StackError:
        return self.failed(f"{self.label} did not start on {self.address} within {STARTUP_TIMEOUT_S:.0f}s",
                           self.log_file, self.stdout_file)

    def started_line(self, pid: int) -> str:
        return f"{self.label} started on {self.address}, {self.how_clients_connect()} (pid {pid}, log {self.log_file})"

    def became_ready(self, process: subprocess.Popen) -> bool:
        """Whether the node just started answers within ``STARTUP_TIMEOUT_S``; False as soon as it exits."""
        try:
            waiting.until(lambda: process.poll() is not None or self.is_ready(), timeout_s=STARTUP_TIMEOUT_S,
                          what=f"{self.name} on {self.address}")
        except waiting.TimedOut:
            return False
        return process.poll() is None

    def serve(self, external: str, publish_ca: Path | None = None) -> NoReturn:
        """Become the node, in the foreground, logging to the console (a container's one process).

        With ``SASL_SSL`` and ``publish_ca``, the authority's certificate (never its key) is copied there first,
        for clients that share that folder only (compose's ``kafka-ca`` volume)."""
        self._write_config(external)
        if publish_ca is not None and self.settings.kafka_secured:
            authority_certificate = certificates.authority_certificate_file(self.settings.tls_dir)
            publish_ca.parent.mkdir(parents=True, exist_ok=True)
            with certificates.locked(self.settings.tls_dir):  # every node publishes it, on one volume
                certificates.write_replacing(publish_ca, authority_certificate.read_bytes(), certificates.PUBLIC)
            logger.info("published the Kafka nodes' CA certificate at %s", publish_ca)
        self._format_storage_once()
        command = self.java_command("kafka.Kafka", str(self.config_file))
        os.execv(command[0], command)  # noqa: S606 - becomes the node, with the stack's own paths

    def stop(self) -> str:
        return self.await_end(self.terminate())

    def terminate(self) -> int | None:
        """Ask the node to stop (a controlled shutdown: it hands its partitions' leadership over, flushes its logs
        and closes cleanly); its pid, or None when it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        os.kill(pid, signal.SIGTERM)
        return pid

    def await_end(self, pid: int | None) -> str:
        """Wait for the node asked to stop (``terminate``'s pid) to end, killing it after ``STOP_TIMEOUT_S``; a line
        saying what happened."""
        if pid is None:
            return f"{self.label} is not running"
        try:
            waiting.until(lambda: not pid_alive(pid), timeout_s=STOP_TIMEOUT_S, what=f"{self.name} (pid {pid}) to stop")
        except waiting.TimedOut:
            logger.warning("%s (pid %d) did not stop within %.0fs; killing it", self.name, pid, STOP_TIMEOUT_S)
            os.kill(pid, signal.SIGKILL)
            waiting.until(lambda: not pid_alive(pid), timeout_s=5, what=f"{self.name} (pid {pid}) to end after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return f"{self.label} stopped (pid {pid})"

    def kill(self) -> int:
        """SIGKILL the node, as a crash or a lost machine would stop it: no controlled shutdown; its pid."""
        pid = self.pid()
        if pid is None:
            raise StackError(f"{self.label} is not running")
        os.kill(pid, signal.SIGKILL)
        waiting.until(lambda: not pid_alive(pid), timeout_s=10, what=f"{self.name} (pid {pid}) to end after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return pid


class KafkaCluster:
    """The ``KAFKA_NODES`` local nodes, started and stopped together, and what a status shows of the whole."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nodes = [KafkaBroker(settings, node) for node in range(1, settings.kafka_nodes + 1)]

    def node(self, number: int) -> KafkaBroker:
        return self.nodes[number - 1]

    def start(self) -> list[str]:
        """Start every node that is not running, then wait for each to answer (a quorum needs its majority)."""
        lines, launched = [], []
        for node in self.nodes:
            if node.pid() is not None:
                lines.append(f"{node.label} is already running on {node.address} (pid {node.pid()})")
            else:
                launched.append((node, node.launch()))
        for node, process in launched:
            if not node.became_ready(process):
                self.stop()
                raise node.start_failed()
            lines.append(node.started_line(process.pid))
        return lines

    def stop(self) -> list[str]:
        """Stop every node: all asked at once, so that none waits for a controller another has already taken down."""
        asked = [(node, node.terminate()) for node in self.nodes]
        return [node.await_end(pid) for node, pid in asked]

    def status(self) -> list[ServiceStatus]:
        return [node.status() for node in self.nodes]

    def active_controller(self) -> int | None:
        """The node id of the quorum's leader, the active controller, as Kafka's own metadata quorum tool reports
        it; None while no node answers or no leader is elected."""
        running = [node for node in self.nodes if node.is_running()]
        if not running:
            return None
        client_config = self.settings.state_dir / "config" / "admin-client.properties"
        write_properties(client_config, kafka_io.java_client_properties(self.settings, kafka_io.ADMIN))
        client_config.chmod(0o600)  # the admin's password, with SASL_SSL
        result = processes.run_program(running[0].java_command(
            "org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-server",
            ",".join(node.address for node in running), "--command-config", str(client_config), "describe",
            "--status"))
        leader = re.search(r"^LeaderId:\s+(\d+)", result.stdout, re.MULTILINE)  # -1 (none elected) does not match
        return int(leader.group(1)) if result.returncode == 0 and leader else None

    def replication_line(self) -> str:
        """The partitions with fewer in-sync copies than replicas, as ``make status`` shows them."""
        try:
            lagging = kafka_io.under_replicated_partitions(self.settings)
        except kafka_io.KafkaUnavailable as error:
            return f"{'':<10} replication unknown: {error}"
        if not lagging:
            return f"{'':<10} no under-replicated partitions"
        shown = ", ".join(f"{topic}[{partition}]" for topic, partition in lagging[:10])
        return f"{'':<10} {len(lagging)} under-replicated partitions: {shown}{' ...' if len(lagging) > 10 else ''}"
